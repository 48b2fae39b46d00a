package admin

import (
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
func (c *Client) Get(path string, v any) error { return c.do(http.MethodGet, path, v) }

// Post sends an empty POST to path and decodes the answer into v.
func (c *Client) Post(path string, v any) error { return c.do(http.MethodPost, path, v) }

// SessionPath returns the API path of session id, plus suffix ("/kick").
func SessionPath(id, suffix string) string {
	return "/api/v1/sessions/" + url.PathEscape(id) + suffix
}

func (c *Client) do(method, path string, v any) error {
	req, err := http.NewRequest(method, "http://edgegw"+path, nil)
	if err != nil {
		return err
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.http.Do(req)
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
