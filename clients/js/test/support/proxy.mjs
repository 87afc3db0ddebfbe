// A TCP proxy in front of a server, for dropping sockets the way a network does: cut() resets every connection
// through it (the client sees close code 1006), and new connections go through as before.
import net from "node:net";

export async function startProxy(target) {
  const { hostname, port } = new URL(target);
  const pairs = new Set();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(port), hostname);
    const pair = { client, upstream };
    pairs.add(pair);
    const end = () => {
      client.destroy();
      upstream.destroy();
      pairs.delete(pair);
    };
    for (const s of [client, upstream]) s.on("error", end).on("close", end);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const at = `127.0.0.1:${server.address().port}`;
  const proxy = {
    url: `ws://${at}/`,
    http: `http://${at}/`,
    cuts: 0,
    cut() {
      this.cuts++;
      for (const { client, upstream } of [...pairs]) {
        client.resetAndDestroy();
        upstream.resetAndDestroy();
      }
    },
    close() {
      const closed = new Promise((resolve) => server.close(resolve));
      proxy.cut();
      return closed;
    },
  };
  return proxy;
}
