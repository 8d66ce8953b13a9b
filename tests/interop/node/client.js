// The Books API from Node: @grpc/grpc-js with books.proto loaded from proto/ by
// @grpc/proto-loader (run.sh). Usage: node client.js HOST:PORT. Checks what
// tests/interop/test_interop.py lists; exits 1 on the first failed expectation.
'use strict';
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const source = process.env.BOOKS_SOURCE_DIR || path.join(__dirname, '..', '..', '..');
const includeDirs = [path.join(source, 'proto'),
  process.env.GOOGLEAPIS_PROTO_DIR || '/usr/share/gocode/src/github.com/gogo/googleapis',
  '/usr/include'];

let passed = 0;
function fail(what) {
  console.log(`interop-node: FAILED: ${what}`);
  process.exit(1);
}
function check(ok, what) {
  if (!ok) fail(what);
  passed++;
}

// google.rpc.Status and its details, for grpc-status-details-bin (AIP-193).
const rpc = new protobuf.Root();
rpc.resolvePath = (origin, target) =>
  includeDirs.map((d) => path.join(d, target)).find((p) => require('fs').existsSync(p)) || target;
rpc.loadSync(['google/rpc/status.proto', 'google/rpc/error_details.proto']);
const Status = rpc.lookupType('google.rpc.Status');

function richStatus(err) {
  const [bin] = err.metadata ? err.metadata.get('grpc-status-details-bin') : [];
  return bin ? Status.decode(bin) : null;
}
function detailsOf(status, typeName) {
  const type = rpc.lookupType(typeName);
  return (status ? status.details : [])
    .filter((any) => any.type_url === `type.googleapis.com/${typeName}`)
    .map((any) => type.decode(any.value));
}

function call(client, method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, { deadline: Date.now() + 10000 }, (err, resp) =>
      (err ? reject(err) : resolve(resp)));
  });
}

async function main() {
  // defaults: unset fields read as their proto3 defaults (an empty next_page_token is '').
  const definition = protoLoader.loadSync('books/v1/books.proto', { includeDirs, defaults: true });
  const { BooksService } = grpc.loadPackageDefinition(definition).books.v1;
  const target = process.argv[2];
  const client = new BooksService(target, grpc.credentials.createInsecure());

  // 1. Create.
  const created = [];
  for (let i = 0; i < 5; i++) {
    const id = `interop-${i}`;
    const book = { displayName: `Title ${id}`, authors: ['Ann', 'Bo'], publisher: 'Pub' };
    const got = await call(client, 'CreateBook', { book, bookId: id });
    if (got.name !== `books/${id}` || got.displayName !== book.displayName ||
        got.authors.join('|') !== 'Ann|Bo' || got.publisher !== 'Pub') {
      fail(`CreateBook answered ${JSON.stringify(got)}`);
    }
    created.push(got);
  }
  check(true, 'create');

  // 2. Get.
  const got = await call(client, 'GetBook', { name: created[0].name });
  check(JSON.stringify(got) === JSON.stringify(created[0]), `GetBook answered ${JSON.stringify(got)}`);

  // 3. List every page.
  const seen = [];
  let token = '';
  let pages = 0;
  do {
    const resp = await call(client, 'ListBooks', { pageSize: 2, pageToken: token });
    if (resp.books.length > 2) fail(`a page of ${resp.books.length} books for page_size 2`);
    seen.push(...resp.books.map((b) => b.name));
    token = resp.nextPageToken;
  } while (++pages < 100 && token !== '');
  const want = created.map((b) => b.name).sort();
  check(JSON.stringify(seen.sort()) === JSON.stringify(want) && pages >= 3 && token === '',
    `ListBooks gave ${seen} in ${pages} pages`);

  // 4. NOT_FOUND with google.rpc.ResourceInfo.
  try {
    await call(client, 'GetBook', { name: 'books/no-such-book' });
    fail('GetBook of a missing book succeeded');
  } catch (err) {
    const status = richStatus(err);
    const named = detailsOf(status, 'google.rpc.ResourceInfo').some((ri) =>
      ri.resourceName === 'books/no-such-book' && ri.resourceType === 'books.example.com/Book');
    check(err.code === grpc.status.NOT_FOUND && status && status.code === 5 && named,
      `NOT_FOUND: ${err.code} ${JSON.stringify(status)}`);
  }

  // 5. INVALID_ARGUMENT with google.rpc.BadRequest.
  try {
    await call(client, 'CreateBook', { book: { authors: ['Ann'], publisher: 'Pub' }, bookId: 'no-title' });
    fail('CreateBook without a display_name succeeded');
  } catch (err) {
    const status = richStatus(err);
    const fields = detailsOf(status, 'google.rpc.BadRequest')
      .flatMap((br) => br.fieldViolations.map((v) => v.field));
    check(err.code === grpc.status.INVALID_ARGUMENT && fields.includes('book.display_name'),
      `INVALID_ARGUMENT: ${err.code} ${JSON.stringify(status)}`);
  }

  client.close();
  console.log(`interop-node: ${passed} passed, 0 failed`);
}

main().catch((err) => fail(err.stack || String(err)));
