/**
 * A tiny static file server (node:http) for the browser smoke test: serves a directory on
 * 127.0.0.1 at an ephemeral port, with the COOP/COEP headers that make the page
 * cross-origin isolated (needed for shared WebAssembly.Memory).
 * @module
 */
import { readFile, stat } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { extname, join, normalize, sep } from "node:path";

const MIME: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".map": "application/json",
  ".wasm": "application/wasm",
  ".svg": "image/svg+xml",
  ".ico": "image/x-icon",
};

const ISOLATION = {
  "Cross-Origin-Opener-Policy": "same-origin",
  "Cross-Origin-Embedder-Policy": "require-corp",
  "Cross-Origin-Resource-Policy": "same-origin",
  "Cache-Control": "no-store",
};

export interface StaticServer {
  /** The server's origin plus "/", e.g. http://127.0.0.1:41234/ */
  url: string;
  close(): Promise<void>;
}

/** serveStatic - serve the files under @root until close(). */
export async function serveStatic(root: string): Promise<StaticServer> {
  const base = normalize(root + sep);
  const server: Server = createServer((req, res) => {
    void (async () => {
      const path = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname);
      let file = normalize(join(base, path.endsWith("/") ? path + "index.html" : path));
      if (!file.startsWith(base)) return send(403, "text/plain", "forbidden");
      if ((await stat(file).catch(() => null))?.isDirectory()) file = join(file, "index.html");
      const body = await readFile(file).catch(() => null);
      if (!body) return send(404, "text/plain", `not found: ${path}`);
      send(200, MIME[extname(file)] ?? "application/octet-stream", body);
    })().catch((e: unknown) => send(500, "text/plain", String(e)));

    function send(status: number, type: string, body: string | Buffer): void {
      res.writeHead(status, { ...ISOLATION, "Content-Type": type, "Content-Length": Buffer.byteLength(body) });
      res.end(req.method === "HEAD" ? undefined : body);
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
