// The one private module of @kubernetes/client-node we import (informer.ts turns watch events into
// typed models with its ObjectSerializer, as list results already are). Private modules change
// without notice: this test pins the version the informer was checked against and what it relies
// on, so an upgrade fails here first instead of silently handing reconcilers untyped objects.
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { ObjectSerializer } from '@kubernetes/client-node/dist/serializer.js';

const CHECKED_VERSION = '2.0.1';

describe('@kubernetes/client-node internals the informer uses', () => {
  it('is the version they were checked against (re-check informer.ts#convert, then raise it)', () => {
    const manifest = createRequire(import.meta.url)('@kubernetes/client-node/package.json') as { version: string };
    expect(manifest.version).toBe(CHECKED_VERSION);
  });

  it('turns a watch event object into the typed model: dates become Dates, fields keep their names', () => {
    const raw = {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: {
        name: 'cart-abc',
        namespace: 'shop',
        creationTimestamp: '2026-01-02T03:04:05Z',
        labels: { 'kubernetes.io/service-name': 'cart' },
      },
      addressType: 'IPv4',
      endpoints: [{ addresses: ['10.0.0.1'], conditions: { ready: true }, zone: 'a' }],
      ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
    };
    const typed = ObjectSerializer.deserialize(raw, 'V1EndpointSlice') as {
      metadata: { creationTimestamp: unknown; labels: Record<string, string> };
      endpoints: { conditions: { ready: boolean }; zone: string }[];
      ports: { port: number }[];
    };
    expect(typed.metadata.creationTimestamp).toEqual(new Date('2026-01-02T03:04:05Z'));
    expect(typed.metadata.labels).toEqual(raw.metadata.labels);
    expect(typed.endpoints[0]).toMatchObject({ conditions: { ready: true }, zone: 'a' });
    expect(typed.ports[0]?.port).toBe(8080);
  });
});
