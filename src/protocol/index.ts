export * from './errors.js';
export * from './buffer-writer.js';
export * from './framer.js';
export * from './message.js';
export * from './frontend.js';
export * from './backend.js';
export * from './startup.js';
export { decodeErrorFields, writeErrorFields } from './fields.js';
export * from './meanings.js';
