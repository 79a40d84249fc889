export * from './middleware.js';
export * from './chain.js';
export * from './session.js';
export * from './relay.js';
export * from './carrier.js';
export * from './wants.js';
