// Failure messages and stack traces go through the payload codec too, so an error that mentions
// device data is encrypted in history. Temporal loads this module by path (the worker also bundles
// it into workflow code), so it is plain CommonJS: it loads the same way from src, dist and tests.
const { DefaultFailureConverter } = require('@temporalio/common');

exports.failureConverter = new DefaultFailureConverter({ encodeCommonAttributes: true });
