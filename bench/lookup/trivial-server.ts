import { createServer } from 'node:http';

/**
 * The calibration target of bench:lookup: node:http answering every request
 * with the same bytes an API lookup returns (BODY), and nothing else. What
 * autocannon reaches against it, on the same machine, is the ceiling of the
 * load generator plus Node's HTTP layer, which no API change can pass.
 * Prints its port on stdout.
 */
const body = Buffer.from(process.env.BODY ?? '{}');
const server = createServer((_req, res) => {
  res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': body.length });
  res.end(body);
});
server.listen(0, '127.0.0.1', () => {
  const addr = server.address();
  process.stdout.write(`${typeof addr === 'object' && addr ? addr.port : 0}\n`);
});
process.on('SIGTERM', () => process.exit(0));
