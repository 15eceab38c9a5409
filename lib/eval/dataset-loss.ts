/** The dataset loss lives with the trainer that runs it (train sits below eval); eval uses it from there. */
export { datasetLoss, type DatasetLoss, type DatasetLossOptions } from '../train/dataset-loss.js';
