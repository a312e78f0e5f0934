// For tests that ask a DNS server: Node's resolver (c-ares) pointed at one address, and the
// outcome of a query as the error code c-ares gives (ENOTFOUND for NXDOMAIN, ENODATA, ESERVFAIL,
// EREFUSED), so a test can wait for a denial as it waits for an answer.
import { Resolver } from 'node:dns/promises';

/** A resolver that asks only `address` (`host:port`). */
export function resolverFor(address: string): Resolver {
  const resolver = new Resolver({ timeout: 2_000, tries: 3 });
  resolver.setServers([address]);
  return resolver;
}

/** 'ok', or the resolver's error code. */
export async function dnsOutcome(query: Promise<unknown>): Promise<string> {
  return query.then(
    () => 'ok',
    (err: NodeJS.ErrnoException) => err.code ?? String(err),
  );
}
