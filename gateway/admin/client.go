package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// Client talks to the admin API over its Unix socket.
type Client struct {
	Socket string
	// Token, if set, is sent as "Authorization: Bearer <Token>".
	Token string
	http  *http.Client
}

// NewClient returns a client of the socket at path.
func NewClient(socket, token string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		DisableKeepAlives: true,
	}
	return &Client{Socket: socket, Token: token, http: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

// ErrNotRunning means nothing serves the socket: the gateway is not running,
// or runs with another data_dir or admin.socket.
var ErrNotRunning = errors.New("the gateway is not running")

// Get fetches path (such as "/api/v1/status") into v.
func (c *Client) Get(path string, v any) error {
	return c.do(context.Background(), http.MethodGet, path, nil, v)
}

// Post sends an empty POST to path and decodes the answer into v.
func (c *Client) Post(path string, v any) error {
	return c.do(context.Background(), http.MethodPost, path, nil, v)
}

// PostJSON sends in as JSON to path and decodes the answer into v. Only ctx
// bounds it (not the client's 10 s): a bus transaction waits for the bus.
func (c *Client) PostJSON(ctx context.Context, path string, in, v any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodPost, path, body, v)
}

// PortPath returns the API path of port name, plus suffix ("/modbus").
func PortPath(name, suffix string) string {
	return "/api/v1/ports/" + url.PathEscape(name) + suffix
}

// SessionPath returns the API path of session id, plus suffix ("/kick").
func SessionPath(id, suffix string) string {
	return "/api/v1/sessions/" + url.PathEscape(id) + suffix
}

func (c *Client) do(ctx context.Context, method, path string, payload []byte, v any) error {
	var rd io.Reader
	if payload != nil {
		rd = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://edgegw"+path, rd)
	if err != nil {
		return err
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.http
	if payload != nil {
		unbounded := *c.http
		unbounded.Timeout = 0
		hc = &unbounded
	}
	resp, err := hc.Do(req)
	if err != nil {
		switch {
		case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED):
			return fmt.Errorf("%w (nothing listens on %s)", ErrNotRunning, c.Socket)
		case errors.Is(err, syscall.EACCES):
			return fmt.Errorf("cannot open %s: permission denied (run as root, as the user edgegw runs as, or as a member of its group)", c.Socket)
		}
		return fmt.Errorf("admin socket %s: %w", c.Socket, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode >= 300 && resp.StatusCode != http.StatusServiceUnavailable {
		e := &APIError{Status: resp.StatusCode}
		if json.Unmarshal(body, e) != nil || e.Message == "" {
			e.Message = strings.TrimSpace(string(body))
		}
		return e
	}
	if v == nil {
		return nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("decode answer of %s: %w", path, err)
	}
	return nil
}
