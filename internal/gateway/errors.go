package gateway

import (
	"encoding/json"
	"net/http"
	"strings"
)

// refusal is a keyhole-made answer: status, reason code (SPEC §5: the
// error's code is the reason without its ":<name>" part) and a message for
// the agent's developer. Messages never hold a secret, a token or the
// request's own bytes beyond what the agent already knows.
type refusal struct {
	status  int
	reason  string
	message string
	rule    string
	header  http.Header // extra response headers (Retry-After, WWW-Authenticate)
}

func (f *refusal) code() string {
	c, _, _ := strings.Cut(f.reason, ":")
	return c
}

type errorBody struct {
	Error struct {
		Code      string `json:"code"`
		Message   string `json:"message"`
		RequestID string `json:"request_id"`
	} `json:"error"`
}

// writeError writes the SPEC §3.3 error envelope.
func writeError(w http.ResponseWriter, status int, code, message, rid string) {
	var b errorBody
	b.Error.Code, b.Error.Message, b.Error.RequestID = code, message, rid
	js, _ := json.Marshal(b)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(js)
	w.Write([]byte("\n"))
}

// Messages of the decision order (SPEC §3.3). Each says what to do.
const (
	msgNoToken      = "no keyhole token: send it as Authorization: Bearer kh_… or X-Keyhole-Token: kh_…"
	msgBadToken     = "the keyhole token is malformed or unknown (keyhole tokens look like kh_ followed by 40 letters and digits)"
	msgExpired      = "the keyhole token has expired; ask for a new one"
	msgRevoked      = "the keyhole token has been revoked"
	msgUnknownProxy = "no such proxy on this gateway"
	msgNotFound     = "no such keyhole endpoint"
	msgNotInScope   = "this token is not scoped to this proxy"
	msgNoRule       = "no rule of this proxy allows this request"
	msgAudit        = "the audit log cannot record this request right now, so keyhole does not forward it; retry shortly"
)
