// Module resolution hooks (node:module register) that let ES modules find packages on NODE_PATH — the layers'
// /opt/nodejs/node_modules and the AWS SDK Lamina ships — which Node.js's ES module resolution never reads.
// A bare specifier that the usual resolution (the importing file's node_modules, then its parents') does not find is
// resolved as if imported from beside each NODE_PATH node_modules directory, in NODE_PATH's order: the function's
// own copy still wins, as with require(). node_handler.mjs registers these only for an ES module handler that
// imports such a package (the hooks run on a loader thread of their own, which costs tens of milliseconds to start).

let parents = [];

export async function initialize(data) {
  parents = data.parents;
}

export async function resolve(specifier, context, next) {
  try {
    return await next(specifier, context);
  } catch (err) {
    if (err?.code !== 'ERR_MODULE_NOT_FOUND' || /^[./]|^[a-z][a-z0-9+.-]*:/i.test(specifier)) throw err;
    for (const parentURL of parents) {
      try {
        return await next(specifier, { ...context, parentURL });
      } catch {
        // not beside this one: the next
      }
    }
    throw err;
  }
}
