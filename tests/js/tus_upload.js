// Upload a file with tus-js-client: node tus_upload.js <endpoint> <file> <token> <chunkSize>
// Prints {"url": ..., "bytes": ...} on success; exits 1 with the error otherwise.
const fs = require("fs");
const path = require("path");
const tus = require("tus-js-client");

const [endpoint, file, token, chunk] = process.argv.slice(2);
const data = fs.readFileSync(file);
const upload = new tus.Upload(data, {
  endpoint,
  chunkSize: chunk ? Number(chunk) : Infinity,
  retryDelays: [200, 500, 1000],
  headers: { Authorization: `Bearer ${token}` },
  metadata: { filename: path.basename(file), filetype: "video/mp4" },
  removeFingerprintOnSuccess: true,
  onError: (err) => { console.error(String(err)); process.exit(1); },
  onSuccess: () => { console.log(JSON.stringify({ url: upload.url, bytes: data.length })); },
});
upload.start();
