// A warm sandbox's Deno: run with `--preload` before the main module is even read, it waits for
// the run's files, writes them into the scratch dir (cwd) and returns; Deno then loads the entry
// named on its command line as the main module (`import.meta.main`, `Deno.args` and
// `Deno.mainModule` as in a cold run). Runs inside the sandbox before any code of the run, with
// the run's permissions (read / write the scratch dir). Protocol: sandbox/warm/protocol.py. Deno
// gets no --allow-env, so the environment it started with is the run's (the host sends -1).

const READY = "\0agentic-warm-ready \n";
const SETUP = "agentic-sandbox: setup failed: ";
const CHUNK = 1 << 20;

function fail(what) {
  Deno.stderr.writeSync(new TextEncoder().encode(SETUP + what + "\n"));
  Deno.exit(125);
}

async function read(size) {
  const buffer = new Uint8Array(size);
  let done = 0;
  while (done < size) {
    const got = await Deno.stdin.read(buffer.subarray(done));
    if (got === null) fail("the run's request ended early");
    done += got;
  }
  return buffer;
}

async function readLine() {
  let line = "";
  while (!line.endsWith("\n")) {
    line += String.fromCharCode((await read(1))[0]); // byte by byte: the rest of stdin is the program's
  }
  return line;
}

async function writeFile(path, size) {
  const slash = path.lastIndexOf("/");
  if (slash > 0) Deno.mkdirSync(path.slice(0, slash), { recursive: true });
  const file = Deno.openSync(path, { write: true, createNew: true, mode: 0o644 });
  try {
    Deno.chmodSync(path, 0o644);
    while (size > 0) {
      let view = await read(Math.min(size, CHUNK));
      size -= view.length;
      while (view.length) view = view.subarray(file.writeSync(view));
    }
  } finally {
    file.close();
  }
}

Deno.stdout.writeSync(new TextEncoder().encode(READY));
const header = new TextDecoder().decode(await read(parseInt(await readLine(), 10))).split("\0");
if (header[0] !== "1") fail(`unknown request version ${header[0]}`);
let at = 2 + parseInt(header[1], 10);
const envCount = parseInt(header[at], 10);
at += 1 + Math.max(envCount, 0) + 2;
const files = header.slice(at + 1, at + 1 + 2 * parseInt(header[at], 10));
try {
  for (let i = 0; i < files.length; i += 2) await writeFile(files[i], parseInt(files[i + 1], 10));
} catch (error) {
  fail(`writing the run's files: ${error}`);
}
