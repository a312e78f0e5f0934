import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';

export interface TlsClientFiles {
  readonly ca: string;
  readonly cert?: string;
  readonly key?: string;
}

/** GET `url`; true on a 200. TLS material is passed as PEM text. */
export function httpOk(url: string, tls?: TlsClientFiles): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const request = url.startsWith('https:') ? httpsRequest : httpRequest;
    const req = request(url, { timeout: 2_000, ...(tls ?? {}) }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.once('timeout', () => req.destroy(new Error(`GET ${url} timed out`)));
    req.once('error', reject);
    req.end();
  });
}
