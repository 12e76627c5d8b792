// The `helm test` Pod's check (templates/tests/test-readyz.yaml): `node -e <this> URL...`.
// Exit 0 when every URL answers 2xx within 5 s, else 1 with what each failing URL did.
const urls = process.argv.slice(1);
Promise.allSettled(urls.map(async (url) => {
  const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
  if (!res.ok) throw new Error(`${url} answered ${res.status}`);
  console.log(`${url} ${res.status}`);
})).then((results) => {
  const failed = results.filter((r) => r.status === 'rejected');
  for (const [i, r] of results.entries()) {
    if (r.status === 'rejected') console.error(`${urls[i]}: ${String(r.reason?.cause ?? r.reason)}`);
  }
  process.exit(urls.length > 0 && failed.length === 0 ? 0 : 1);
});
