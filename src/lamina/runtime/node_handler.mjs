// The Node.js handler runtime: runs inside an environment, pulls invocations, calls the exported handler.
//
//     node --expose-gc --max-semi-space-size=S --max-old-space-size=O <runtime dir>/node_handler.mjs
//
// It speaks the environment channel's frames (wire.py) on the inherited descriptor named by _LAMINA_CHANNEL_FD,
// as the Python runtime does: READY or INIT_ERROR once the handler is loaded, then for each INVOKE a RESULT or
// ERROR (STREAM pieces before it for a streaming handler), each result also asking for the next invocation.
//
// The channel is read and written synchronously (fs.readSync / fs.writeSync on the socket): while the runtime
// waits for its next invocation nothing else runs, as in a Lambda environment frozen between invocations, and the
// channel is no handle of the event loop, so the loop empties (`beforeExit`) when the handler's work is done —
// which is what callbackWaitsForEmptyEventLoop waits for.
//
// Semantics follow AWS's runtime interface client for Node.js (aws-lambda-nodejs-runtime-interface-client):
// handler strings and how a module is loaded (CommonJS, .mjs, .cjs, "type": "module"), async and callback
// handlers, context.done/succeed/fail, callbackWaitsForEmptyEventLoop, the error shape ({errorType,
// errorMessage, trace}) and the Runtime.* errors, console.* as `time\trequestId\tLEVEL\tmessage` lines (or JSON
// with AWS_LAMBDA_LOG_FORMAT=JSON, filtered by AWS_LAMBDA_LOG_LEVEL), awslambda.streamifyResponse and
// awslambda.HttpResponseStream, an uncaught exception or unhandled rejection failing the invocation and ending
// the process. Only Node.js's own modules are used.

import fs from 'node:fs';
import { createRequire, isBuiltin, register } from 'node:module';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import util from 'node:util';

const KIND_READY = 1;
const KIND_INVOKE = 2;
const KIND_RESULT = 3;
const KIND_ERROR = 4;
const KIND_INIT_ERROR = 5;
const KIND_STREAM = 10;
const PREFIX_SIZE = 9; // >I length of the rest | B kind | >I header length

const started = performance.now();
const NODE_MAJOR = Number(process.versions.node.split('.')[0]);
const requireHere = createRequire(import.meta.url);

// ------------------------------------------------------------------------------------------------ the channel

const channelFd = Number(process.env._LAMINA_CHANNEL_FD);
delete process.env._LAMINA_CHANNEL_FD;
const pause = new Int32Array(new SharedArrayBuffer(4));

function retryLater(err) {
  // The descriptor is blocking; should it ever not be, wait a millisecond rather than spin.
  if (err.code !== 'EAGAIN') throw err;
  Atomics.wait(pause, 0, 0, 1);
}

function writeAll(buf) {
  let off = 0;
  while (off < buf.length) {
    try {
      off += fs.writeSync(channelFd, buf, off, buf.length - off);
    } catch (err) {
      retryLater(err);
    }
  }
}

const outbox = Buffer.allocUnsafe(65536);

// One frame, written with one write(2): small ones are assembled in a reused buffer (no allocation on the hot path).
function send(kind, header, body) {
  const head = JSON.stringify(header);
  const payload = body === undefined ? '' : body; // bytes, or a string written as UTF-8
  const headLength = Buffer.byteLength(head);
  const bodyLength = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
  const size = PREFIX_SIZE + headLength + bodyLength;
  const frame = size <= outbox.length ? outbox : Buffer.allocUnsafe(size);
  frame.writeUInt32BE(size - 4, 0);
  frame.writeUInt8(kind, 4);
  frame.writeUInt32BE(headLength, 5);
  frame.write(head, PREFIX_SIZE, headLength, 'utf8');
  if (typeof payload === 'string') frame.write(payload, PREFIX_SIZE + headLength, 'utf8');
  else frame.set(payload, PREFIX_SIZE + headLength);
  writeAll(frame.subarray(0, size));
}

function readInto(buf, start) {
  for (;;) {
    try {
      return fs.readSync(channelFd, buf, start, buf.length - start, null);
    } catch (err) {
      retryLater(err);
    }
  }
}

// The next frame, [kind, header, body], or null once the server has closed the channel. The server sends one
// INVOKE at a time and waits for its answer, so a read never holds the start of a second frame: one read(2) brings
// a whole small frame, and a large one is read on into a buffer of its size.
const inbox = Buffer.allocUnsafe(65536);

function recv() {
  let got = 0;
  while (got < PREFIX_SIZE) {
    const n = readInto(inbox, got);
    if (n === 0) return null;
    got += n;
  }
  const size = 4 + inbox.readUInt32BE(0);
  let frame = inbox;
  if (size > inbox.length) {
    frame = Buffer.allocUnsafe(size);
    inbox.copy(frame, 0, 0, got);
  }
  while (got < size) {
    const n = readInto(frame.subarray(0, size), got);
    if (n === 0) return null;
    got += n;
  }
  const headLength = frame.readUInt32BE(5);
  const headEnd = PREFIX_SIZE + headLength;
  const header = headLength ? JSON.parse(frame.toString('utf8', PREFIX_SIZE, headEnd)) : {};
  // The body is copied out of the reused inbox: the handler may keep what it is given.
  const body = frame === inbox ? Buffer.from(frame.subarray(headEnd, size)) : frame.subarray(headEnd, size);
  return [frame.readUInt8(4), header, body];
}

function maxRssKb() {
  return process.resourceUsage().maxRSS;
}

// ------------------------------------------------------------------------------------------------ errors

class RuntimeError extends Error {}
const errors = {};
for (const name of ['ImportModuleError', 'HandlerNotFound', 'MalformedHandlerName', 'UserCodeSyntaxError',
  'MalformedStreamingHandler', 'InvalidStreamingOperation', 'UnhandledPromiseRejection', 'NodeJsExit',
  'CallbackHandlerDeprecated']) {
  errors[name] = class extends RuntimeError {};
  Object.defineProperty(errors[name], 'name', { value: name });
  errors[name].prototype.name = `Runtime.${name}`;
}

function isErrorLike(obj) {
  return obj && typeof obj.name === 'string' && typeof obj.message === 'string' && typeof obj.stack === 'string';
}

// The error as an invocation's response body: {errorType, errorMessage, trace}.
function toResponse(error) {
  try {
    if (util.types.isNativeError(error) || isErrorLike(error)) {
      return { errorType: error.name, errorMessage: error.message, trace: error.stack.split('\n') };
    }
    return { errorType: typeof error, errorMessage: String(error), trace: [] };
  } catch {
    return {
      errorType: 'handled',
      errorMessage: 'callback called with Error argument, but there was a problem while retrieving one or more of '
        + 'its message, name, and stack',
    };
  }
}

function withEnumerableProperties(value) {
  if (!(value instanceof Error)) return value;
  const out = Object.assign({ errorType: value.name, errorMessage: value.message, code: value.code }, value);
  if (typeof value.stack === 'string') out.stack = value.stack.split('\n');
  return out;
}

// How an error is logged in text mode: a tab, then its JSON.
function formatted(error) {
  try {
    return '\t' + JSON.stringify(error, (_key, value) => withEnumerableProperties(value));
  } catch {
    return '\t' + JSON.stringify(toResponse(error));
  }
}

function intoError(err) {
  return err instanceof Error ? err : new Error(err);
}

// ------------------------------------------------------------------------------------------------ logging

let currentRequestId;
let currentTenantId;
const LEVELS = {
  TRACE: 1, DEBUG: 2, INFO: 3, WARN: 4, ERROR: 5, FATAL: 6,
};
const jsonLogs = (process.env.AWS_LAMBDA_LOG_FORMAT || '').toUpperCase() === 'JSON';

function jsonErrorReplacer(_key, value) {
  if (value instanceof Error) {
    return Object.assign({
      errorType: value?.constructor?.name ?? 'UnknownError',
      errorMessage: value.message,
      stackTrace: typeof value.stack === 'string' ? value.stack.split('\n') : value.stack,
    }, value);
  }
  return value;
}

function jsonLine(level, params) {
  const record = { timestamp: new Date().toISOString(), level, requestId: currentRequestId };
  if (currentTenantId != null) record.tenantId = currentTenantId;
  if (params.length === 1) {
    record.message = params[0];
    try {
      return JSON.stringify(record, jsonErrorReplacer);
    } catch {
      record.message = util.format(record.message);
      return JSON.stringify(record);
    }
  }
  record.message = util.format(...params);
  const error = params.find((p) => p instanceof Error);
  if (error !== undefined) {
    record.errorType = error?.constructor?.name ?? 'UnknownError';
    record.errorMessage = error.message;
    record.stackTrace = typeof error.stack === 'string' ? error.stack.split('\n') : [];
  }
  return JSON.stringify(record);
}

function log(level, params) {
  const line = jsonLogs ? jsonLine(level, params)
    : `${new Date().toISOString()}\t${currentRequestId}\t${level}\t${util.format(...params)}`;
  // One record per call, as on AWS: the lines of a multi-line message are joined with \r. Writes to the log
  // pipe are synchronous, so every line is in the pipe before the invocation's result leaves.
  process.stdout.write(line.replace(/\n/g, '\r') + '\n');
}

function patchConsole() {
  const threshold = LEVELS[(process.env.AWS_LAMBDA_LOG_LEVEL || '').toUpperCase()] ?? LEVELS.TRACE;
  const logger = (level) => (LEVELS[level] >= threshold ? (...params) => log(level, params) : () => {});
  console.trace = logger('TRACE');
  console.debug = logger('DEBUG');
  console.info = logger('INFO');
  console.log = console.info;
  console.warn = logger('WARN');
  console.error = logger('ERROR');
  console.fatal = (...params) => log('FATAL', params);
}

function logError(message, err) {
  if (jsonLogs) console.error(intoError(err));
  else console.error(message, formatted(intoError(err)));
}

// ------------------------------------------------------------------------------------------------ loading

const HANDLER_STREAMING = Symbol.for('aws.lambda.runtime.handler.streaming');
const HANDLER_HIGHWATERMARK = Symbol.for('aws.lambda.runtime.handler.streaming.highWaterMark');
const STREAM_RESPONSE = 'response';
const PRELUDE_CONTENT_TYPE = 'application/vnd.awslambda.http-integration-response';

class HttpResponseStream {
  // The application/vnd.awslambda.http-integration-response content: the prelude's JSON and 8 NUL bytes before
  // the body, which a function URL turns into the response's status, headers and cookies.
  static from(underlyingStream, prelude) {
    underlyingStream.setContentType(PRELUDE_CONTENT_TYPE);
    const metadata = JSON.stringify(prelude);
    underlyingStream._onBeforeFirstWrite = (write) => {
      write(metadata);
      write(new Uint8Array(8));
    };
    return underlyingStream;
  }
}

function installGlobals() {
  const off = process.env.AWS_LAMBDA_NODEJS_NO_GLOBAL_AWSLAMBDA;
  if (off === '1' || off === 'true') return;
  globalThis.awslambda = {
    streamifyResponse(handler, options) {
      handler[HANDLER_STREAMING] = STREAM_RESPONSE;
      if (typeof options?.highWaterMark === 'number') handler[HANDLER_HIGHWATERMARK] = parseInt(options.highWaterMark);
      return handler;
    },
    HttpResponseStream,
  };
}

function typeModule(folder) {
  // The nearest package.json says "type": "module"? (node_modules ends the search, as in Node.js.)
  for (let dir = folder; ; dir = path.dirname(dir)) {
    if (dir.endsWith('/node_modules')) return false;
    const pj = path.join(dir, 'package.json');
    if (fs.existsSync(pj)) {
      try {
        return JSON.parse(fs.readFileSync(pj)).type === 'module';
      } catch (err) {
        console.warn(`${pj} cannot be read, it will be ignored for ES module detection purposes.`, err);
        return false;
      }
    }
    if (dir === '/') return false;
  }
}

function requireIfThere(file) {
  return fs.existsSync(file) ? requireHere(file) : undefined;
}

async function importIfThere(file) {
  if (!fs.existsSync(file)) return undefined;
  esmNodePath(file);
  return import(pathToFileURL(file).href);
}

// ES modules do not read NODE_PATH; AWS's Node.js runtimes still let an ES module handler import the SDK they
// include and its layers' packages. So when the handler module imports a package that only NODE_PATH has,
// resolution hooks (node_esm_paths.mjs) add NODE_PATH's node_modules directories after the usual ones. Only then:
// the hooks' loader thread costs tens of milliseconds of init. (The handler file's own imports are what is read.)
const IMPORTED = /(?:^|[\s;}])(?:import|export)\s[^'"`;]*?\bfrom\s*['"]([^'"]+)['"]|\bimport\s*(?:\(\s*)?['"]([^'"]+)['"]/g;
let esmHooks = false;

function esmNodePath(file) {
  if (esmHooks) return;
  const dirs = (process.env.NODE_PATH || '').split(':').filter((d) => d.endsWith('/node_modules') && fs.existsSync(d));
  if (!dirs.length) return;
  let source;
  try {
    source = fs.readFileSync(file, 'utf8');
  } catch {
    return;
  }
  for (const m of source.matchAll(IMPORTED)) {
    const spec = m[1] || m[2];
    if (/^[./]|^[a-z][a-z0-9+.-]*:/i.test(spec) || isBuiltin(spec)) continue;
    const pkg = spec.split('/').slice(0, spec.startsWith('@') ? 2 : 1).join('/');
    if (ownPackage(path.dirname(file), pkg) || !dirs.some((d) => fs.existsSync(path.join(d, pkg)))) continue;
    esmHooks = true;
    const parents = dirs.map((d) => pathToFileURL(path.join(path.dirname(d), 'lamina-esm-paths.mjs')).href);
    register(new URL('./node_esm_paths.mjs', import.meta.url), { data: { parents } });
    return;
  }
}

function ownPackage(folder, pkg) {
  // Found by the usual resolution: a node_modules of the file's folder or of one of its parents.
  for (let dir = folder; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'node_modules', pkg))) return true;
    if (dir === '/') return false;
  }
}

// As AWS's runtime: `module` relative to the task root (extensionless and .js by require unless "type":
// "module"; then .js and .mjs by import, .cjs by require), else Node.js's own resolution from the task root.
async function loadModule(appRoot, moduleRoot, module) {
  const base = path.resolve(appRoot, moduleRoot, module);
  const extensionless = requireIfThere(base);
  if (extensionless) return extensionless;
  const esm = fs.existsSync(base + '.js') && typeModule(path.dirname(base + '.js'));
  if (!esm) {
    const loaded = requireIfThere(base + '.js');
    if (loaded) return loaded;
  }
  const loaded = (esm && (await importIfThere(base + '.js'))) || (await importIfThere(base + '.mjs'))
    || requireIfThere(base + '.cjs');
  if (loaded) return loaded;
  return requireHere(requireHere.resolve(module, { paths: [appRoot, moduleRoot] }));
}

async function loadHandler(appRoot, handlerString) {
  if (handlerString.includes('..')) {
    throw new errors.MalformedHandlerName(`'${handlerString}' is not a valid handler name. Use absolute paths `
      + 'when specifying root directories in handler names.');
  }
  const moduleAndHandler = path.basename(handlerString);
  const moduleRoot = handlerString.substring(0, handlerString.indexOf(moduleAndHandler));
  const match = moduleAndHandler.match(/^([^.]*)\.(.*)$/);
  if (!match) throw new errors.MalformedHandlerName('Bad handler');
  const [, module, handlerPath] = match;
  installGlobals();
  let app;
  try {
    app = await loadModule(appRoot, moduleRoot, module);
  } catch (err) {
    if (err instanceof SyntaxError) throw new errors.UserCodeSyntaxError(err);
    if (err?.code === 'MODULE_NOT_FOUND') throw new errors.ImportModuleError(err);
    throw err;
  }
  const handler = handlerPath.split('.').reduce((obj, key) => obj && obj[key], app);
  if (!handler) throw new errors.HandlerNotFound(`${handlerString} is undefined or not exported`);
  if (typeof handler !== 'function') throw new errors.HandlerNotFound(`${handlerString} is not a function`);
  const streaming = handler[HANDLER_STREAMING];
  if (streaming !== undefined && streaming !== null && streaming !== false && streaming !== STREAM_RESPONSE) {
    throw new errors.MalformedStreamingHandler('Only response streaming is supported.');
  }
  const isAsync = handler.constructor?.name === 'AsyncFunction';
  if (streaming !== STREAM_RESPONSE && !isAsync && handler.length === 3 && NODE_MAJOR >= 24) {
    // Node.js 24's runtime takes async handlers only.
    throw new errors.CallbackHandlerDeprecated('ERROR: AWS Lambda does not support callback-based function '
      + 'handlers when using Node.js 24 or later. Please update this function to use an async handler.');
  }
  return {
    handler, isAsync, streaming: streaming === STREAM_RESPONSE,
    highWaterMark: Number.isNaN(parseInt(handler[HANDLER_HIGHWATERMARK])) ? undefined
      : parseInt(handler[HANDLER_HIGHWATERMARK]),
  };
}

// ------------------------------------------------------------------------------------------------ invocations

const LISTENER = Symbol.for('aws.lambda.beforeExit');
const noListener = () => {};
const beforeExit = {
  invoke: () => globalThis[LISTENER](),
  reset: () => { globalThis[LISTENER] = noListener; },
  set: (listener) => { globalThis[LISTENER] = listener; },
};

let onUncaught = (error) => initFailed(error, 129);
let onRejection = (error) => initFailed(error, 128);

function initFailed(error, code) {
  send(KIND_INIT_ERROR, { init_ms: performance.now() - started }, JSON.stringify(toResponse(error)));
  process.exit(code);
}

function postResult(id, result, then) {
  let body;
  try {
    body = JSON.stringify(result === undefined ? null : result);
  } catch (err) {
    postError(id, new Error(`Unable to stringify response body as json: ${err.message}`), then);
    return;
  }
  send(KIND_RESULT, { id, rss_kb: maxRssKb() }, body === undefined ? 'null' : body);
  then();
}

function postError(id, err, then, exiting = false) {
  const response = toResponse(err);
  const header = { id, error_type: response.errorType, rss_kb: maxRssKb() };
  if (exiting) header.exit = 1; // the server sends this environment nothing more
  send(KIND_ERROR, header, JSON.stringify(response));
  then();
}

// The context's values that come from the environment's variables, read once (each process.env read is a getenv).
let environmentData;

function contextFor(header, base) {
  if (environmentData === undefined) {
    const env = process.env;
    environmentData = {
      functionVersion: env.AWS_LAMBDA_FUNCTION_VERSION,
      functionName: env.AWS_LAMBDA_FUNCTION_NAME,
      memoryLimitInMB: env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
      logGroupName: env.AWS_LAMBDA_LOG_GROUP_NAME,
      logStreamName: env.AWS_LAMBDA_LOG_STREAM_NAME,
    };
  }
  const deadline = header.deadline_ms;
  // Own, enumerable properties, as AWS's runtime builds its context (Object.assign).
  Object.assign(base, environmentData);
  base.clientContext = header.client_context;
  base.identity = undefined;
  base.invokedFunctionArn = header.arn;
  base.awsRequestId = header.id;
  base.tenantId = header.tenant_id;
  base.getRemainingTimeInMillis = () => deadline - Date.now();
  return base;
}

// The callback, and the context's callbackWaitsForEmptyEventLoop and done/succeed/fail, as AWS's runtime has
// them: only the first call counts; a callback's result waits for the event loop to empty unless told not to.
function callbackContext(id, scheduleNext) {
  let waitForEmptyEventLoop = true;
  let completed = false;
  let finished = false;
  const complete = (result) => {
    if (completed) {
      console.error('Invocation has already been reported as done. Cannot call complete more than once per '
        + 'invocation.');
      return;
    }
    completed = true;
    postResult(id, result, scheduleNext);
  };
  const fail = (err) => {
    completed = true;
    logError('Invoke Error', err);
    postError(id, err, scheduleNext);
  };
  const once = (fn) => (...args) => {
    if (!finished) {
      finished = true;
      fn(...args);
    }
  };
  const done = (err, result) => {
    beforeExit.reset();
    if (err !== undefined && err !== null) fail(err);
    else complete(result);
  };
  const callback = (err, result) => {
    beforeExit.reset();
    if (err !== undefined && err !== null) fail(err);
    else if (!waitForEmptyEventLoop) complete(result);
    else beforeExit.set(() => setImmediate(() => complete(result)));
  };
  const context = {
    get callbackWaitsForEmptyEventLoop() { return waitForEmptyEventLoop; },
    set callbackWaitsForEmptyEventLoop(value) { waitForEmptyEventLoop = value; },
    succeed: once((result) => done(null, result)),
    fail: once((err) => done(err === undefined || err === null ? 'handled' : err, null)),
    done: once(done),
  };
  return [once(callback), context, () => { completed = true; }];
}

function setErrorCallbacks(id) {
  onUncaught = (error) => postError(id, error, () => process.exit(129), true);
  onRejection = (error) => postError(id, error, () => process.exit(128), true);
}

function isPromise(obj) {
  return obj && typeof obj.then === 'function';
}

let traced = '_X_AMZN_TRACE_ID' in process.env; // whether it may be set (process.env is the C environment)

function startInvocation(header) {
  currentRequestId = header.id;
  currentTenantId = header.tenant_id;
  if (header.trace_id) {
    process.env._X_AMZN_TRACE_ID = header.trace_id;
    traced = true;
  } else if (traced) {
    delete process.env._X_AMZN_TRACE_ID;
    traced = false;
  }
  setErrorCallbacks(header.id);
}

function invoke(fn, header, body) {
  startInvocation(header);
  const id = header.id;
  const [callback, base, markCompleted] = callbackContext(id, scheduleNext);
  beforeExit.set(() => {
    // The event loop emptied with no answer: an async handler's promise never settled (an error), a callback
    // handler never called back (null, as on AWS).
    markCompleted();
    if (fn.isAsync) {
      const error = new errors.NodeJsExit('The Lambda runtime client detected an unexpected Node.js exit code. '
        + 'This is most commonly caused by a Promise that was never settled. For more information, see '
        + 'https://nodejs.org/docs/latest/api/process.html#exit-codes');
      logError('Invoke Error', error);
      postError(id, error, scheduleNext);
    } else {
      postResult(id, null, scheduleNext);
    }
  });
  try {
    const context = contextFor(header, base);
    const result = fn.handler(body.length ? JSON.parse(body) : {}, context, callback);
    if (isPromise(result)) result.then(context.succeed, context.fail).catch(context.fail);
  } catch (err) {
    callback(err);
  }
}

function asBytes(chunk) {
  // As AWS's stream: what is neither a string nor bytes is written as its JSON.
  if (typeof chunk === 'string' || Buffer.isBuffer(chunk) || chunk instanceof Uint8Array) return chunk;
  return JSON.stringify(chunk);
}

class ResponseStream extends Writable {
  constructor(id, highWaterMark) {
    super(highWaterMark === undefined ? {} : { highWaterMark });
    this._id = id;
    this._started = false;
    this._contentType = 'application/octet-stream';
    this._onBeforeFirstWrite = undefined;
  }

  setContentType(contentType) {
    if (this._started) throw new errors.InvalidStreamingOperation('Cannot set content-type, too late.');
    this._contentType = contentType;
  }

  _begin() {
    if (this._started) return;
    this._started = true;
    if (typeof this._onBeforeFirstWrite === 'function') {
      this._onBeforeFirstWrite((chunk) => super.write(chunk));
    }
  }

  write(chunk, encoding, cb) {
    this._begin();
    return super.write(asBytes(chunk), encoding, cb);
  }

  end(chunk, encoding, cb) {
    this._begin(); // a response that is only a prelude (a status, headers) still sends its prelude
    if (chunk === undefined || chunk === null || typeof chunk === 'function') return super.end(chunk, encoding, cb);
    return super.end(asBytes(chunk), encoding, cb);
  }

  _write(chunk, _encoding, cb) {
    if (chunk.length) send(KIND_STREAM, { id: this._id }, chunk);
    cb();
  }
}

async function invokeStreaming(fn, header, body) {
  startInvocation(header);
  const id = header.id;
  let waitForEmptyEventLoop = true;
  let answered = false;
  const next = () => {
    beforeExit.reset();
    if (!waitForEmptyEventLoop) scheduleNext();
    else beforeExit.set(() => setImmediate(scheduleNext));
  };
  const fail = (err) => {
    if (answered) return;
    answered = true;
    logError('Invoke Error', err);
    postError(id, err, next);
  };
  const stream = new ResponseStream(id, fn.highWaterMark);
  beforeExit.set(scheduleNext);
  try {
    const context = contextFor(header, {
      get callbackWaitsForEmptyEventLoop() { return waitForEmptyEventLoop; },
      set callbackWaitsForEmptyEventLoop(value) { waitForEmptyEventLoop = value; },
    });
    const pending = fn.handler(body.length ? JSON.parse(body) : {}, stream, context);
    if (!isPromise(pending)) {
      fail('Streaming does not support non-async handlers.');
      return;
    }
    const result = await pending;
    if (result !== undefined) console.warn('Streaming handlers ignore return values.');
    if (stream.writableEnded && !stream.writableFinished) {
      await new Promise((resolve) => stream.once('finish', resolve)); // emitted on a later tick
    }
    if (!stream.writableFinished) {
      fail('Response stream is not finished.');
      return;
    }
    answered = true;
    send(KIND_RESULT, { id, rss_kb: maxRssKb() });
    next();
  } catch (err) {
    fail(err);
  }
}

let loaded;

function scheduleNext() {
  setImmediate(next);
}

function next() {
  const frame = recv(); // blocks until the server sends the next invocation
  if (frame === null) process.exit(0); // the server is done with this environment
  const [kind, header, body] = frame;
  if (kind !== KIND_INVOKE) {
    scheduleNext();
    return;
  }
  if (loaded.streaming) invokeStreaming(loaded, header, body);
  else invoke(loaded, header, body);
}

async function main() {
  patchConsole();
  process.on('uncaughtException', (error) => {
    logError('Uncaught Exception', error);
    onUncaught(error);
  });
  process.on('unhandledRejection', (reason) => {
    const error = new errors.UnhandledPromiseRejection(reason instanceof Error ? `${reason}` : String(reason));
    logError('Unhandled Promise Rejection', error);
    onRejection(error);
  });
  beforeExit.reset();
  process.on('beforeExit', () => beforeExit.invoke());
  // The runtime is pid 1 of its sandbox, where a signal with no handler is ignored: SIGTERM ends it as it would
  // end any node process (unless the function handles SIGTERM itself).
  process.on('SIGTERM', () => {
    if (process.listenerCount('SIGTERM') === 1) process.exit(143);
  });
  const taskRoot = process.env.LAMBDA_TASK_ROOT || process.cwd();
  process.chdir(taskRoot);
  try {
    loaded = await loadHandler(taskRoot, process.env._HANDLER || '');
  } catch (err) {
    logError('Uncaught Exception', err);
    initFailed(err, 129);
  }
  if (!loaded.isAsync && !loaded.streaming && loaded.handler.length === 3 && NODE_MAJOR < 24
      && process.env.AWS_LAMBDA_NODEJS_DISABLE_CALLBACK_WARNING === undefined) {
    console.warn('AWS Lambda plans to remove support for callback-based function handlers starting with Node.js '
      + '24. You will need to update this function to use an async handler to use Node.js 24 or later.');
  }
  // What init left behind is collected now, within init (its CPU), not in the first invocation, held to the
  // environment's share of a CPU (as a zygote collects before it forks).
  if (typeof globalThis.gc === 'function') globalThis.gc();
  send(KIND_READY, { init_ms: performance.now() - started });
  scheduleNext();
}

main();
