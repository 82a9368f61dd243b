package matrix

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// What the channel records of an inbound event (sealed in the store).
const (
	kindInvite    = "invite" // the bot was invited to a room
	kindMember    = "member" // someone joined or was invited to a room
	kindMessage   = "msg"    // a decrypted text message, in canonical form
	kindEncrypted = "enc"    // an encrypted event whose key has not arrived
	kindRefuse    = "refuse" // refused; Reason is what the sender is told
)

type inbound struct {
	K      string          `json:"k"`
	Text   string          `json:"t,omitempty"`
	Reason string          `json:"r,omitempty"`
	Raw    json.RawMessage `json:"e,omitempty"`
}

// MaxInboundText caps the canonical text of one message (bytes of UTF-8).
const MaxInboundText = 16 << 10

// maxRawEvent caps an encrypted event kept while its key is awaited
// (homeservers cap events at 64 KiB).
const maxRawEvent = 96 << 10

// canonical turns a decrypted event into the one text the agent gets, or a
// refusal. Every shape is handled on purpose: text, notices and emotes are
// read; edits become a new message marked as an edit; replies lose their
// quoted fallback (the agent has the history) and are marked; HTML
// (formatted_body) is ignored in favour of the plain body; media is refused;
// control characters are removed; invalid UTF-8 and oversized texts are
// refused. encrypted says the event arrived encrypted (a decrypted event
// whose payload claims otherwise is refused).
func canonical(evt *event.Event, encrypted bool) inbound {
	if !encrypted {
		return inbound{K: kindRefuse, Reason: "that message was not encrypted; I did not read it"}
	}
	// The homeserver names the sender; only the keys tie the message to
	// them. A Megolm session that belongs to no device of the named sender
	// (or to one whose keys differ, or a blacklisted one) is how a hostile
	// homeserver would speak as an owner: refused.
	if ts := evt.Mautrix.TrustState; ts == id.TrustStateUnknownDevice || ts < id.TrustStateUnset {
		return inbound{K: kindRefuse, Reason: "I could not tie that message to one of your devices, so I did not read it. Please check your devices (verify them), then send it again."}
	}
	raw := evt.Content.VeryRaw
	if raw == nil {
		var err error
		if raw, err = json.Marshal(evt.Content.Raw); err != nil {
			return inbound{K: kindRefuse, Reason: "I could not read that message"}
		}
	}
	return canonicalContent(evt.Type.Type, raw)
}

type messageContent struct {
	MsgType   string `json:"msgtype"`
	Body      string `json:"body"`
	RelatesTo *struct {
		RelType   string `json:"rel_type"`
		InReplyTo *struct {
			EventID string `json:"event_id"`
		} `json:"m.in_reply_to"`
	} `json:"m.relates_to"`
	NewContent *struct {
		MsgType string `json:"msgtype"`
		Body    string `json:"body"`
	} `json:"m.new_content"`
}

// canonicalContent is canonical on the event type and raw content JSON (the
// fuzzed core).
func canonicalContent(evType string, raw []byte) inbound {
	if evType != event.EventMessage.Type {
		return inbound{K: kindRefuse, Reason: "I can only read text messages"}
	}
	if len(raw) > maxRawEvent {
		return inbound{K: kindRefuse, Reason: "that message is too large for me to read"}
	}
	var m messageContent
	if err := json.Unmarshal(raw, &m); err != nil {
		return inbound{K: kindRefuse, Reason: "I could not read that message (malformed content)"}
	}
	prefix := ""
	msgtype, body := m.MsgType, m.Body
	if m.RelatesTo != nil {
		switch {
		case m.RelatesTo.RelType == "m.replace":
			if m.NewContent == nil {
				return inbound{K: kindRefuse, Reason: "I could not read that edit"}
			}
			prefix = "(edited an earlier message) "
			msgtype, body = m.NewContent.MsgType, m.NewContent.Body
		case m.RelatesTo.InReplyTo != nil:
			prefix = "(in reply to an earlier message) "
			body = stripReplyFallback(body)
		}
	}
	switch msgtype {
	case "m.text":
	case "m.notice":
		prefix += "(notice) "
	case "m.emote":
		prefix += "(emote) "
	case "m.image", "m.file", "m.audio", "m.video", "m.location":
		return inbound{K: kindRefuse, Reason: "I cannot open images, files, audio, video or locations; please send text"}
	default:
		return inbound{K: kindRefuse, Reason: "I can only read text messages"}
	}
	if !utf8.ValidString(body) {
		return inbound{K: kindRefuse, Reason: "that message is not valid UTF-8 text"}
	}
	text := strings.TrimSpace(sanitizeText(body))
	if text == "" {
		return inbound{K: kindRefuse, Reason: "that message was empty"}
	}
	text = prefix + text
	if len(text) > MaxInboundText {
		return inbound{K: kindRefuse, Reason: fmt.Sprintf("that message is too long (%d bytes; the limit is %d KiB)", len(text), MaxInboundText>>10)}
	}
	return inbound{K: kindMessage, Text: text}
}

// sanitizeText removes control characters (keeping newline and tab) and
// bidirectional overrides, which have no business in a chat message to an
// agent and can hide text from a human reading the transcript.
func sanitizeText(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\n' || r == '\t':
			return r
		case r == '\r':
			return -1
		case unicode.IsControl(r), unicode.Is(unicode.Bidi_Control, r), r == '\u2028', r == '\u2029', r == '\ufeff':
			return -1
		}
		return r
	}, s)
}

// stripReplyFallback drops the "> <@user> quoted" lines a client puts before
// the reply itself.
func stripReplyFallback(body string) string {
	lines := strings.Split(body, "\n")
	i := 0
	for i < len(lines) && strings.HasPrefix(lines[i], ">") {
		i++
	}
	if i > 0 && i < len(lines) && strings.TrimSpace(lines[i]) == "" {
		i++
	}
	return strings.Join(lines[i:], "\n")
}

func hashHex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}
