package gateway

import (
	"errors"
	"fmt"
)

// checkTLSFiles loads the certificate, key and client CA files of every TLS
// listener as New would; each failure is a ConfigError naming the listener.
func checkTLSFiles(file string, c Config) error {
	var errs []error
	for i, l := range c.Listeners {
		if l.TLS == nil {
			continue
		}
		if _, err := newTLSSource(l.Name, *l.TLS, nil); err != nil {
			errs = append(errs, &ConfigError{File: file, Key: fmt.Sprintf("listeners[%d].tls", i), Msg: err.Error()})
		}
	}
	return errors.Join(errs...)
}
