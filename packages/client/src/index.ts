export * from './core/index.ts';
export * from './node/index.ts';
export * from './node/durable-queue/index.ts';
