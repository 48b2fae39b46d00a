package gateway

// AdminSocketPath returns the admin socket's path ("" when turned off).
func (c Config) AdminSocketPath() string { return c.Admin.SocketPath(c.DataDir) }
