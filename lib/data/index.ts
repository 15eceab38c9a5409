/** Data layer: JSONL exports → records → prepared shards → training batches. */
export type { Batch } from './batch.js';
export { EpochIterator, dataCursorSchema, type DataCursor, type EpochIteratorOptions } from './epoch-iterator.js';
export { planEpoch, planStats, batchPlanOptionsSchema, type BatchPlanOptions, type BatchPlanOptionsInput, type PlanStats, type PlannedBatch } from './batch-plan.js';
export { PreparedDataset, PreparedSplit, openPreparedDataset, type RecordSource, type TokenRecord } from './prepared-dataset.js';
export { readManifest, manifestSchema, MANIFEST_FILE, type Manifest, type ShardInfo, type SplitInfo } from './manifest.js';
export { prepareDataset, prepareOptionsSchema, type PrepareOptionsInput, type PrepareResult, type PrepareProgress, type PrepareHooks } from './prepare.js';
export { formatReport, type PrepareReport } from './report.js';
export { createConversationLogger, type ConversationLogger, type ConversationLoggerOptions, type LoggedConversation } from './conversation-logger.js';
export { readJsonlLines, DEFAULT_MAX_LINE_BYTES, type JsonlItem, type JsonlReadOptions } from './jsonl-reader.js';
export { readInputRecords, type LineOutcome } from './record-reader.js';
export { resolveInputs, type InputFile } from './inputs.js';
export { FORMAT_PARSERS, detectFileFormat, detectLineFormat } from './formats/index.js';
export { resolveFieldMapping, fieldMappingSchema, type FieldMapping, type FieldMappingInput } from './field-mapping.js';
export { ROLES, RECORD_FORMATS, type Role, type ChatMessage, type RecordBody, type DataRecord, type RecordFormat } from './record.js';
export { REJECTION_REASONS, RecordError, StrictModeError, type Rejection, type RejectionReason } from './errors.js';
export { SPLITS, assignSplit, DEFAULT_SPLIT_FRACTIONS, type SplitName, type SplitFractions } from './split.js';
export { contentHash, normalizedContent } from './content-hash.js';
export { EMIT_FORMATS, emitRecord, type EmitFormat } from './emit.js';
