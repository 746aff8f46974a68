// The public surface (API.md) and nothing else.
export { LogBusError } from './errors.js';
export type { LogBusErrorCode } from './errors.js';
export type { LogBusOptions, TopicConfig, RetentionConfig, FsyncMode, Duration } from './options.js';
