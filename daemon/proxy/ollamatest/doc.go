// Package ollamatest holds model back ends for tests; production code never
// imports it.
//
//   - Scripted is an HTTP server speaking Ollama's exact /api/chat wire
//     format (NDJSON streaming or one JSON object, tool_calls, {"error":…}
//     lines under HTTP 200, error statuses) that answers each call with the
//     next Reply a test scripted, and records what it was asked. Random
//     weights never call tools, so turns with tool calls need it.
//   - WriteTinyGGUF writes a tiny llama-architecture GGUF v3 model (random
//     F32 weights, a SentencePiece-style tokenizer with byte tokens), and
//     StartReal runs the real Ollama server (built by .ci/install-ollama.sh)
//     on a free loopback port serving it as TinyModel. Its answers are
//     gibberish, but they prove the real path: streaming, errors, unknown
//     models, refused endpoints.
package ollamatest
