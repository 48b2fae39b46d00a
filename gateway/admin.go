package gateway

import (
	"log/slog"
	"maps"
	"slices"
	"time"

	"edgegw/config"
	"edgegw/gateway/admin"
)

// Wiring of the admin server (gateway/admin): built in New, listening once the
// gateway serves (Start), closed first in Close so that no request reads parts
// being stopped.

// newAdmin returns the admin server, or nil when the configuration turns off
// both the socket and the TCP listener.
func (g *Gateway) newAdmin(started time.Time) *admin.Server {
	a := g.cfg.Admin
	if g.cfg.AdminSocketPath() == "" && a.HTTP == "" {
		return nil
	}
	parts := &admin.Parts{
		Version: g.cfg.Version, Started: started, Engine: g.engine, Server: g.srv, Store: g.store,
		Bridges: g.Bridges, Meters: g.Meters,
		Clock: g.clock, SiteID: g.cfg.SiteID, DataDir: g.cfg.DataDir,
		Listeners: g.listenerInfo, Reload: g.ReloadConfig,
	}
	if parts.Version == "" {
		parts.Version = "dev"
	}
	return admin.New(admin.Config{Socket: g.cfg.AdminSocketPath(), HTTP: a.HTTP, HTTPLoopback: config.IsLoopback(a.HTTP),
		Token: a.Token}, parts, g.log.With(slog.String("component", "admin")))
}

// listenerInfo lists the MQTT listeners by name, each with the sessions online
// through it. Cost: a pass over the sessions.
func (g *Gateway) listenerInfo() []admin.Listener {
	clients := map[string]int{}
	for _, s := range g.engine.SessionDetails() {
		if s.Online {
			clients[s.Listener]++
		}
	}
	out := make([]admin.Listener, 0, len(g.listeners))
	for _, name := range slices.Sorted(maps.Keys(g.listeners)) {
		out = append(out, g.listeners[name].info(clients[name]))
	}
	return out
}

// Admin returns the admin server, or nil when it is turned off.
func (g *Gateway) Admin() *admin.Server { return g.admin }
