package wire

// The model proxy shares the session socket under /api/ and speaks Ollama's
// own API there, so the agent uses Ollama's client unchanged. These are the
// few facts both sides must agree on beyond Ollama's protocol.
const (
	// PathModelChat is the one model endpoint the proxy forwards.
	PathModelChat = "/api/chat"
	// ModelPathPrefix routes every /api/ path to the proxy, which refuses
	// all but PathModelChat.
	ModelPathPrefix = "/api/"
)

// HTTP statuses the proxy answers a refused call with, beside those it
// passes on from Ollama (400 bad request or no tool support, 404 unknown
// model, 5xx upstream trouble). The agent maps them to its own errors.
const (
	// ModelStatusNotAllowed: the session's profile does not allow the model.
	ModelStatusNotAllowed = 403
	// ModelStatusBudget: the session's call rate, concurrency or daily
	// token budget is spent for now.
	ModelStatusBudget = 429
	// ModelStatusTooLarge: the request is over a size or count cap.
	ModelStatusTooLarge = 413
)

// ModelErrTooLarge starts the text of an {"error": …} line the proxy sends
// in the middle of a stream when the answer grew past its cap (a line under
// HTTP 200, as Ollama sends its own mid-stream errors).
const ModelErrTooLarge = "ironclaw proxy: response too large"
