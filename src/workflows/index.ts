// The workflow bundle's entry point: every workflow the worker runs is exported here.
export * from './device-admin';
export * from './fleet';
export * from './stats';
export * from './presence';
export * from './presence-reconcile';
export * from './campaign';
export * from './command';
