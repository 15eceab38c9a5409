import type { Command } from 'commander';

/** Each command module registers itself on the program; add new ones to this list. */
export type RegisterCommand = (program: Command) => void;

export const commands: RegisterCommand[] = [];
commands.push((await import('./prepare.js')).register);
commands.push((await import('./inspect.js')).register);
commands.push((await import('./generate.js')).register);
commands.push((await import('./info.js')).register);
commands.push((await import('./fuse.js')).register);
commands.push((await import('./train.js')).register);
commands.push((await import('./export.js')).register);
commands.push((await import('./route.js')).register);
commands.push((await import('./models.js')).register);
commands.push((await import('./report.js')).register);
commands.push((await import('./eval.js')).register);
commands.push((await import('./demo.js')).register);
commands.push((await import('./retrain.js')).register);
