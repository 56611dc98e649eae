// A subscriber of hisp's event webhooks on loopback, as an integrator would write one: it verifies
// each request's signature with the standardwebhooks library (Standard Webhooks' own) and answers
// with the status the test sets.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';

export interface ReceivedHook<E> {
  event: E;
  headers: http.IncomingHttpHeaders;
  /** The signature verified under the secret set with `secret()`. */
  verified: boolean;
}

export interface WebhookReceiver<E> {
  /** `http://127.0.0.1:<port>/hisp-events`. */
  url: string;
  received: ReceivedHook<E>[];
  /** The `whsec_…` secret hisp returned when the webhook was subscribed. */
  secret(value: string): void;
  /** The status answered from now on (default 204). */
  answer(status: number): void;
  close(): Promise<void>;
}

export async function startWebhookReceiver<E = unknown>(): Promise<WebhookReceiver<E>> {
  let secret = '';
  let status = 204;
  const received: ReceivedHook<E>[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      let verified: boolean;
      try {
        new Webhook(secret.replace(/^whsec_/, '')).verify(body, req.headers as Record<string, string>);
        verified = true;
      } catch {
        verified = false;
      }
      received.push({ event: JSON.parse(body) as E, headers: req.headers, verified });
      res.writeHead(status).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hisp-events`,
    received,
    secret: (value) => void (secret = value),
    answer: (value) => void (status = value),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
