package server

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A WebSocket upgrade through a proxy with allow_websocket (SPEC §3.4): the
// 101 and the frames pass both ways, the upstream gets the injected
// credential and never the token, and the exchange is recorded.
func TestWebSocketUpgradePassesThrough(t *testing.T) {
	n := startNode(t)
	f := n.fx("ws", map[string]any{"allow_websocket": true}, rule("all", "allow", "GET /**"))
	gotAuth := make(chan string, 1)
	f.up.on("/v1/socket", func(w http.ResponseWriter, r *http.Request) {
		gotAuth <- r.Header.Get("Authorization") + "|" + r.Header.Get("X-Keyhole-Token")
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			http.Error(w, "not an upgrade", 400)
			return
		}
		sum := sha1.Sum([]byte(r.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
			base64.StdEncoding.EncodeToString(sum[:]))
		brw.Flush()
		io.Copy(c, brw) // echo whatever the client sends (the frames are opaque here)
	})
	c, err := net.DialTimeout("tcp", n.gw, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET /ws/v1/socket HTTP/1.1\r\nHost: k\r\nAuthorization: Bearer %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", f.tok)
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no response to the upgrade: %v", err)
	}
	if res.StatusCode != http.StatusSwitchingProtocols || res.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("want 101 with the upstream's Sec-WebSocket-Accept, got %d %v", res.StatusCode, res.Header)
	}
	rid := res.Header.Get("X-Keyhole-Request-Id")
	frame := []byte{0x81, 0x05, 'h', 'e', 'l', 'l', 'o'} // an unmasked text frame: opaque bytes to keyhole
	c.Write(frame)
	echo := make([]byte, len(frame))
	if _, err := io.ReadFull(br, echo); err != nil || string(echo) != string(frame) {
		t.Fatalf("the frames pass both ways: sent %q, got %q (%v)", frame, echo, err)
	}
	if a := <-gotAuth; a != "Bearer "+f.s+"|" {
		t.Errorf("the upstream gets the injected credential and no keyhole token; got %q", strings.ReplaceAll(a, f.s, "<secret>"))
	}
	c.Close()
	var rec map[string]any
	for i := 0; i < 100; i++ {
		if rec = n.record(rid); rec["incomplete"] != true {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if fmt.Sprint(rec["status"]) != "101" {
		t.Errorf("the upgrade is recorded with status 101; got %v", rec["status"])
	}
}
