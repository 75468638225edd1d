// The official stripe SDK through keyhole's host routing (SPEC §3.1): the
// SDK takes a host but no base path, so keyhole runs with --host-suffix
// .localhost and the SDK talks to stripe.localhost. Node does not resolve
// *.localhost by itself; localhostAgent does (lib.mjs).
import Stripe from 'stripe';
import { env, out, main, localhostAgent } from './lib.mjs';

const token = env('KH_TOKEN');
const port = Number(env('KEYHOLE_PORT'));
const host = process.env.STRIPE_HOST || 'stripe.localhost';

main(async () => {
  const stripe = new Stripe(token, {
    host,
    port,
    protocol: 'http',
    httpAgent: localhostAgent,
    maxNetworkRetries: 2,
  });

  // A form-encoded POST with an idempotency key of our own.
  const customer = await stripe.customers.create(
    { email: 'jenny@example.com', name: 'Jenny Rosen', metadata: { order: '6735' } },
    { idempotencyKey: 'idem-create-jenny' },
  );
  out('create', { id: customer.id, object: customer.object, email: customer.email, name: customer.name, description: customer.description });

  const got = await stripe.customers.retrieve(customer.id);
  out('retrieve', { id: got.id, email: got.email });

  // Stripe answers 429 with Retry-After and Stripe-Should-Retry: true once;
  // the SDK retries on its own (same Idempotency-Key, which it generates).
  const charge = await stripe.charges.create({ amount: 500, currency: 'usd', source: 'tok_visa' });
  out('retry', { id: charge.id, amount: charge.amount });

  // Stripe-Should-Retry: false — the SDK gives up at once and the error
  // carries the upstream's hints, unchanged.
  try {
    await stripe.refunds.create({ charge: charge.id });
    out('no_retry', { unexpected: 'success' });
  } catch (err) {
    out('no_retry', {
      type: err.type,
      status: err.statusCode,
      code: err.code,
      retry_after: err.headers?.['retry-after'],
      should_retry: err.headers?.['stripe-should-retry'],
    });
  }

  // keyhole's own refusal (no rule allows deleting customers) reaches the
  // SDK as an error with keyhole's code.
  try {
    await stripe.customers.del(customer.id);
    out('refused', { unexpected: 'success' });
  } catch (err) {
    out('refused', { status: err.statusCode, code: err.code, message: err.message });
  }
});
