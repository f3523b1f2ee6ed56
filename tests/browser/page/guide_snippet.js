// The granite-assets guide's client-side upload for tusd ("Client-Side Upload
// (JavaScript)", method = "POST"), run by app.js (`runGuideSnippet`) as a
// module with `file`, `content_type` and `requested_key` set on the page.
//
// From `import` to `upload.start()` it is the guide's text, character for
// character but for the indentation, with one change the guide's code needs to
// run at all: its first statement reads `key` in its own initializer
// (`const { url, headers, key } = await fetch(... new URLSearchParams({ key,
// content_type }) ...)`), which throws "ReferenceError: Cannot access 'key'
// before initialization" in every JavaScript engine. The key asked for is
// therefore `requested_key` here; the `key` that comes back is granite's, as
// in the guide. tests/e2e_browser.rs checks that the `new Upload(...)` call
// and everything after it is the guide's text.
//
// granite's `headers` go to tus-js-client as they are: `Tus-Resumable`,
// `Upload-Metadata` and `Content-Length: 0`. The browser refuses to set the
// last one ("Refused to set unsafe header"), joins granite's `Tus-Resumable`
// to tus-js-client's own (`1.0.0, 1.0.0`), which the shipped
// nginx/assetgate-uploads.conf turns back into `1.0.0` for tusd, and sends
// `Upload-Metadata` on every request (creation, PATCH, HEAD): what
// `[upload] session_binding = "token"` checks.
import { Upload } from 'tus-js-client';

const { url, headers, key } = await fetch(
  '/api/upload-url?' + new URLSearchParams({ key: requested_key, content_type })
).then(r => r.json());

const upload = new Upload(file, {
  endpoint: url,
  headers: headers, // includes Tus-Resumable + Upload-Metadata
  removeFingerprintOnSuccess: true,
  onSuccess: () => fetch('/api/confirm', { method: 'POST',
    body: JSON.stringify({ key }) }),
  onError: (err) => console.error('Upload failed:', err),
});
upload.start();
