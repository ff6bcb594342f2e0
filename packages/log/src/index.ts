export { escapeControl, formatFields, formatJson, formatText } from './format.ts';
export { LEVELS, type Level, levelOf, PRIORITY } from './levels.ts';
export {
  createSink,
  fileDestination,
  functionDestination,
  isJournalStream,
  type LogDestination,
  type LogFormat,
  type Sink,
  type SinkOptions,
  stdDestination,
} from './sink.ts';
export { editDistance, nearest } from './suggest.ts';
