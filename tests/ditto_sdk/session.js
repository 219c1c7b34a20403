// A Ditto client session against `twinedge serve`, made with Eclipse Ditto's own
// JavaScript SDK (@eclipse-ditto/ditto-javascript-client-node).
//
//   node session.js <http://host:port> <api key>
//
// Prints one JSON line per SDK call: {"call": <name>, "ok": true, "value": ..., "status"?,
// "etag"?} when the SDK resolved, {"call": <name>, "ok": false, "error": {...}} when it
// rejected. tests/runtime/api/test_ditto_sdk.py checks each line against hand-written
// expectations. Every call runs even when an earlier one failed.
//
// The SDK models no desiredProperties (its Feature keeps definition and properties), so
// the session adds them the way the SDK is meant to be extended: a Feature subclass that
// writes them and a custom features handle (builder.withCustomFeaturesHandle) that reads
// and writes them with the SDK's own request factory.
'use strict';

const {
  BasicErrorResponse,
  DefaultCountOptions,
  DefaultFeaturesHandle,
  DefaultFieldsOptions,
  DefaultGetThingsOptions,
  DefaultMatchOptions,
  DefaultMessagesOptions,
  DefaultSearchOptions,
  DefaultTokenSupplier,
  DittoNodeClient,
  Feature,
  HttpVerb,
  NodeHttpBearerAuth,
  Thing,
} = require('@eclipse-ditto/ditto-javascript-client-node');

const [base, token] = process.argv.slice(2);
if (!base || !token) {
  console.error('usage: node session.js <http://host:port> <api key>');
  process.exit(2);
}
const domain = new URL(base).host;

class DesiredFeature extends Feature {
  constructor(id, definition, properties, desiredProperties) {
    super(id, definition, properties);
    this.desiredProperties = desiredProperties;
  }

  toObject() {
    const o = super.toObject();
    if (this.desiredProperties !== undefined) {
      o.desiredProperties = this.desiredProperties;
    }
    return o;
  }
}

class DesiredFeaturesHandle extends DefaultFeaturesHandle {
  getDesiredProperties(featureId, options) {
    return this.requestFactory.fetchJsonRequest({
      verb: HttpVerb.GET,
      parser: o => o,
      id: this.thingId,
      path: `features/${featureId}/desiredProperties`,
      requestOptions: options,
    });
  }

  putDesiredProperty(featureId, propertyPath, value, options) {
    return this.requestFactory.fetchPutRequest({
      verb: HttpVerb.PUT,
      parser: o => o,
      id: this.thingId,
      path: `features/${featureId}/desiredProperties/${propertyPath}`,
      requestOptions: options,
      payload: value,
    });
  }
}

const desiredHandle = (builder, thingId) =>
  new DesiredFeaturesHandle(builder.buildInstance('things'), thingId);

function plain(x) {
  if (x === undefined) return null;
  if (x === null || typeof x !== 'object') return x;
  if (typeof x.toObject === 'function') return x.toObject();
  if (Array.isArray(x)) return x.map(plain);
  if (x instanceof Map) return Object.fromEntries([...x].map(([k, v]) => [k, plain(v)]));
  const o = {};
  for (const k of Object.keys(x)) o[k] = plain(x[k]);
  return o;
}

function header(headers, name) {
  if (!(headers instanceof Map)) return null;
  for (const [k, v] of headers) {
    if (k.toLowerCase() === name) return v;
  }
  return null;
}

function emit(line) {
  process.stdout.write(JSON.stringify(line) + '\n');
}

async function call(name, fn) {
  try {
    const res = await fn();
    const line = { call: name, ok: true };
    if (res !== null && typeof res === 'object' && 'status' in res && 'headers' in res) {
      line.status = res.status; // a PutResponse
      line.value = plain(res.body);
      line.etag = header(res.headers, 'etag');
    } else {
      line.value = plain(res);
    }
    emit(line);
    return res;
  } catch (e) {
    let error;
    if (e instanceof BasicErrorResponse) {
      error = { status: e.status, body: plain(e.body) };
    } else if (e instanceof Error) {
      error = { message: String(e) };
    } else {
      error = { body: plain(e) }; // the WebSocket client rejects with the error's value
    }
    emit({ call: name, ok: false, error });
    return undefined;
  }
}

function sleep(ms) {
  return new Promise(resolve => setTimeout(resolve, ms));
}

async function httpSession() {
  const client = DittoNodeClient.newHttpClient()
    .withoutTls()
    .withDomain(domain)
    .withAuthProvider(NodeHttpBearerAuth.newInstance(new DefaultTokenSupplier(token)))
    .withCustomFeaturesHandle(desiredHandle)
    .build();
  const things = client.getThingsHandle();
  const car1 = 'sdk:car-1';
  const car2 = 'sdk:car-2';
  const engine = id => client.getFeaturesHandle(id);

  // a plain twin: attributes, a feature with reported and desired properties
  await call('http.putThing', () =>
    things.putThing(
      new Thing(car1, undefined, { model: 'roadster', year: 2020 }, {
        engine: new DesiredFeature('engine', undefined, { rpm: 0 }, { rpm: 900 }),
      }),
    ),
  );
  // a Ditto thing as pasted from Ditto: policyId, definition, a feature definition
  await call('http.putThing.ditto', () =>
    things.putThing(
      new Thing(
        car2,
        'sdk:car-policy',
        { model: 'van' },
        {
          engine: new DesiredFeature('engine', ['sdk:engine:1.0.0'], { rpm: 0 }, { rpm: 700 }),
        },
        undefined,
        undefined,
        'sdk:vehicle:2.1.0',
      ),
    ),
  );
  await call('http.getThing.fields', () =>
    things.getThing(
      car2,
      DefaultFieldsOptions.getInstance().withFields(
        'thingId',
        'policyId',
        'definition',
        'attributes(model)',
        'features(engine(definition,properties))',
      ),
    ),
  );
  await call('http.getPolicyId', () => things.getPolicyId(car2));
  await call('http.getDefinition', () => things.getDefinition(car2));
  await call('http.getAttributes', () => things.getAttributes(car1));
  await call('http.getProperties', () => engine(car1).getProperties('engine'));
  await call('http.getDesiredProperties', () => engine(car1).getDesiredProperties('engine'));
  await call('http.putProperty', () => engine(car1).putProperty('engine', 'rpm', 1200));
  await call('http.putDesiredProperty', () => engine(car1).putDesiredProperty('engine', 'rpm', 950));
  await call('http.patchAttributes', () =>
    things.patchAttributes(car1, { year: 2021, color: 'red' }),
  );
  await call('http.putAttribute', () => things.putAttribute(car1, 'owner', 'ada'));
  await call('http.patchThing', () =>
    things.patchThing(new Thing(car1, undefined, { color: null })),
  );
  await call('http.getThing', () => things.getThing(car1));
  return client;
}

async function wsSession() {
  const client = DittoNodeClient.newWebSocketClient()
    .withoutTls()
    .withDomain(domain)
    .withAuthProvider(NodeHttpBearerAuth.newInstance(new DefaultTokenSupplier(token)))
    .withBuffer(100)
    .twinChannel()
    .withCustomFeaturesHandle(desiredHandle)
    .build();
  const things = client.getThingsHandle();
  const events = client.getEventsHandle();
  const seen = [];
  await call('ws.getThing', () => things.getThing('sdk:car-1'));
  await call('ws.getAttribute.missing', () => things.getAttribute('sdk:car-1', 'nope'));
  await call('ws.requestEvents', () => events.requestEvents());
  await call('ws.subscribeToAllEvents', () => {
    events.subscribeToAllEvents(e => seen.push(e));
    return Promise.resolve('subscribed');
  });
  await call('ws.putAttribute', () => things.putAttribute('sdk:car-1', 'speed', 42));
  await call('ws.putProperty', () =>
    client.getFeaturesHandle('sdk:car-1').putProperty('engine', 'rpm', 1500),
  );
  await call('ws.patchAttributes', () =>
    things.patchAttributes('sdk:car-1', { trip: 12.5, fuel: 'diesel' }),
  );
  await call('ws.getDesiredProperties', () =>
    client.getFeaturesHandle('sdk:car-1').getDesiredProperties('engine'),
  );
  await call('ws.createThing', () =>
    things.createThing(new Thing('sdk:bike-1', undefined, { wheels: 2 })),
  );
  await call('ws.createThing.again', () =>
    things.createThing(new Thing('sdk:bike-1', undefined, { wheels: 3 })),
  );
  await call('ws.deleteThing', () => things.deleteThing('sdk:bike-1'));
  for (let i = 0; i < 100 && seen.length < 5; i++) {
    await sleep(50);
  }
  emit({
    call: 'ws.events',
    ok: true,
    value: seen.map(e => ({ action: e.action, topic: e.topic, path: e.path, value: e.value ?? null })),
  });
  await call('ws.stopEvents', () => events.stopEvents());
  client.close();
}

async function conditionalSession(client) {
  const things = client.getThingsHandle();
  const car1 = 'sdk:car-1';
  // conditional writes with Ditto's entity tags: car-1 is at revision 9 here (6 after
  // the HTTP writes, 3 more over the WebSocket)
  await call('http.putAttribute.ifMatch', () =>
    things.putAttribute(car1, 'year', 2022, DefaultMatchOptions.getInstance().ifMatch('"rev:9"')),
  );
  await call('http.putAttribute.ifMatch.stale', () =>
    things.putAttribute(car1, 'year', 1999, DefaultMatchOptions.getInstance().ifMatch('"rev:1"')),
  );
}

// A search answer as plain JSON: the items as the SDK parsed them and the cursor (null
// or absent on the last page) and nextPageOffset exactly as the server sent them.
function page(res) {
  return {
    items: res.items.map(plain),
    cursor: res._cursor === undefined ? '(absent)' : res._cursor,
    nextPageOffset: res._nextPageOffset === undefined ? '(absent)' : res._nextPageOffset,
  };
}

// seats and makes of the things searched below: ilike(attributes/make,"acme*") matches
// all but lot:a3; the namespace yard holds one more match
const LOT = [
  ['lot:a1', 'ACME Motors', 4],
  ['lot:a2', 'acme trucks', 2],
  ['lot:a3', 'Other', 7],
  ['lot:a4', 'ACMEX', 5],
  ['lot:a5', 'Acme', 3],
  ['lot:a6', 'acme', 1],
  ['yard:b1', 'ACME yard', 9],
];

async function searchSession(client) {
  const things = client.getThingsHandle();
  const search = client.getSearchHandle();
  for (const [id, make, seats] of LOT) {
    await call(`http.putThing.${id}`, () =>
      things.putThing(new Thing(id, undefined, { make, seats, color: 'grey' })),
    );
  }
  // GET /search/things, every page: size 2, most seats first, lot only, two fields
  const acme = () =>
    DefaultSearchOptions.getInstance()
      .withRawFilter('ilike(attributes/make,"acme*")')
      .withNamespaces('lot')
      .withFields('thingId', 'attributes(seats,make)')
      .withPageSize(2)
      .withSort('-attributes/seats');
  let cursor = null;
  for (let n = 1; n <= 4; n++) {
    const options = cursor ? acme().withCursor(cursor) : acme();
    const res = await call(`http.search.page${n}`, async () => page(await search.search(options)));
    cursor = res && typeof res.cursor === 'string' && res.cursor !== '(absent)' ? res.cursor : null;
    if (!cursor) break;
  }
  // POST /search/things with a form body, paged with size 1 across two namespaces
  const seats = () =>
    DefaultSearchOptions.getInstance()
      .withRawFilter('in(attributes/seats,2,9)')
      .withNamespaces('lot', 'yard')
      .withFields('thingId')
      .withPageSize(1)
      .withSort('+thingId');
  cursor = null;
  for (let n = 1; n <= 3; n++) {
    const options = cursor ? seats().withCursor(cursor) : seats();
    const res = await call(`http.postSearch.page${n}`, async () =>
      page(await search.postSearch(options)),
    );
    cursor = res && typeof res.cursor === 'string' && res.cursor !== '(absent)' ? res.cursor : null;
    if (!cursor) break;
  }
  // Ditto's older paging: limit(offset,count), fewest seats first, page by page with the
  // nextPageOffset of each answer (-1 on the last)
  const byOffset = offset =>
    DefaultSearchOptions.getInstance()
      .withNamespaces('lot')
      .withFields('thingId')
      .withLimit(offset, 3)
      .withSort('+attributes/seats');
  let offset = 0;
  for (let n = 1; n <= 3; n++) {
    const name = n === 1 ? 'http.search.limit' : `http.search.limit.page${n}`;
    const res = await call(name, async () => page(await search.search(byOffset(offset))));
    offset = res && typeof res.nextPageOffset === 'number' ? res.nextPageOffset : -1;
    if (offset < 0) break;
  }
  await call('http.count', () =>
    search.count(
      DefaultCountOptions.getInstance()
        .withRawFilter('ilike(attributes/make,"ACME*")')
        .withNamespaces('lot', 'yard'),
    ),
  );
  await call('http.postCount', () =>
    search.postCount(DefaultCountOptions.getInstance().withNamespaces('lot')),
  );
  await call('http.postCount.filter', () =>
    search.postCount(
      DefaultCountOptions.getInstance().withRawFilter('ilike(attributes/make,"*Motors")'),
    ),
  );
  // several things by id: the visible ones, in the order asked, projected
  await call('http.getThings', () =>
    things.getThings(
      ['lot:a3', 'lot:nope', 'yard:b1', 'lot:a1'],
      DefaultGetThingsOptions.getInstance().withFields('thingId', 'attributes/make'),
    ),
  );
  // conditional writes with condition=: the SDK has no builder method for it, so it goes
  // as a request parameter (and as Ditto's `condition` header) of the match options
  const when = rql =>
    DefaultMatchOptions.getInstance().addRequestParameter('condition', encodeURIComponent(rql));
  await call('http.putAttribute.condition', () =>
    things.putAttribute('lot:a3', 'seats', 8, when('eq(attributes/seats,7)')),
  );
  await call('http.putAttribute.condition.false', () =>
    things.putAttribute('lot:a3', 'seats', 6, when('eq(attributes/seats,7)')),
  );
  await call('http.patchAttributes.conditionHeader', () =>
    things.patchAttributes(
      'lot:a3',
      { color: 'blue' },
      DefaultMatchOptions.getInstance().addHeader('condition', 'lt(attributes/seats,10)'),
    ),
  );
  await call('http.patchAttributes.conditionHeader.false', () =>
    things.patchAttributes(
      'lot:a3',
      { color: 'red' },
      DefaultMatchOptions.getInstance().addHeader('condition', 'eq(attributes/color,"grey")'),
    ),
  );
  await call('http.getAttributes.afterConditions', () => things.getAttributes('lot:a3'));
}

// Messages to a thing's inbox: twinedge sends them to the device over MQTT as a command
// and answers with the device's reply. The test connects a device for sdk:lamp-1 that
// answers `switch` and never answers `ignore`.
async function messagesSession(client) {
  const messages = client.getMessagesHandle();
  await call('http.messageToThing', () =>
    messages.messageToThing(
      'sdk:lamp-1',
      'switch',
      { on: true, level: 80 },
      'application/json',
      DefaultMessagesOptions.getInstance().withTimeout(10),
    ),
  );
  await call('http.messageToThing.timeout', () =>
    messages.messageToThing(
      'sdk:lamp-1',
      'ignore',
      { on: false },
      'application/json',
      DefaultMessagesOptions.getInstance().withTimeout(1),
    ),
  );
}

// The same message over the WebSocket, as Ditto's live channel carries it.
async function wsMessagesSession() {
  const client = DittoNodeClient.newWebSocketClient()
    .withoutTls()
    .withDomain(domain)
    .withAuthProvider(NodeHttpBearerAuth.newInstance(new DefaultTokenSupplier(token)))
    .withBuffer(10)
    .liveChannel()
    .build();
  await call('ws.live.messageToThing', () =>
    Promise.race([
      client
        .getMessagesHandle()
        .messageToThing('sdk:lamp-1', 'switch', { on: false, level: 20 }, 'application/json'),
      sleep(15000).then(() => Promise.reject(new Error('no answer within 15 s'))),
    ]),
  );
  client.close();
}

async function main() {
  const http = await httpSession();
  await wsSession();
  await conditionalSession(http);
  await searchSession(http);
  await messagesSession(http);
  await wsMessagesSession();
  const things = http.getThingsHandle();
  await call('http.deleteThing', () => things.deleteThing('sdk:car-1'));
  await call('http.getThing.deleted', () => things.getThing('sdk:car-1'));
}

// The SDK rejects a promise nobody holds when its WebSocket is closed on purpose
// ("Reconnect disabled"); that is the end of the session, not a failure.
process.on('unhandledRejection', reason => {
  if (reason === 'Reconnect disabled') return;
  console.error(reason);
  process.exit(1);
});

main().then(
  () => process.exit(0),
  e => {
    console.error(e);
    process.exit(1);
  },
);
