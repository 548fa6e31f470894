// Preloaded (`--import`) into the server and the echo server when the bench starts them with
// --expose-gc. On request over the IPC channel it runs a full garbage collection, so the RSS the
// bench then reads holds live memory rather than whatever garbage a login burst left behind.
// It changes nothing else in the process it measures.
const gc = (globalThis as { gc?: () => void }).gc;

if (typeof process.send === 'function') {
  process.on('message', (msg: unknown) => {
    if ((msg as { type?: string } | null)?.type !== 'gc') return;
    if (gc) {
      // Twice: the first pass can leave objects whose finalisers free more on the second.
      gc();
      gc();
    }
    const m = process.memoryUsage();
    process.send!({ type: 'gc-done', collected: Boolean(gc), heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers });
  });
  // The channel must not keep the process alive: it ends when the server would have ended.
  process.channel?.unref();
}
