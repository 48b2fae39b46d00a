// Package deb is what the edgegw Debian package (built by packaging/mkdeb) and
// `edgegw service install` share, so that both install the same thing: the
// systemd unit, the packaged configuration, the maintainer scripts, and the
// paths and account they use.
package deb

import (
	"bytes"
	"embed"
	"fmt"
	"strings"

	"edgegw/gateway"
)

// Paths and account of an installed edgegw.
const (
	Name        = "edgegw"                  // package, service and user name
	User        = "edgegw"                  // the unprivileged account edgegw runs as
	Group       = "edgegw"                  // its primary group; owns the data dir, reads the config
	SerialGroup = "dialout"                 // supplementary group owning the serial ports
	BinPath     = "/usr/bin/edgegw"         // the binary, in the package
	ConfigDir   = "/etc/edgegw"             // configuration directory
	ConfigPath  = "/etc/edgegw/edgegw.yaml" // the configuration the unit runs with
	DataDir     = "/var/lib/edgegw"         // data_dir of the packaged configuration
	UnitName    = "edgegw.service"
	// UnitPath is where the package installs the unit; `edgegw service install`
	// writes /etc/systemd/system/edgegw.service instead.
	UnitPath = "/lib/systemd/system/edgegw.service"
)

// Modes of the installed files and directories.
const (
	DataDirMode = 0o750 // edgegw:edgegw
	ConfigMode  = 0o640 // root:edgegw: bridge credentials may live in it
)

// UnitTemplate is the systemd unit in the template syntax of
// github.com/kardianos/service (its SystemdScript option). Its only action is
// {{Path | cmdEscape}}, the binary's path; Unit renders it the same way.
//
//go:embed edgegw.service.in
var UnitTemplate string

// pathAction is the one template action UnitTemplate may contain.
const pathAction = "{{Path | cmdEscape}}"

// Unit renders UnitTemplate for the binary at execPath, as kardianos/service does
// (cmdEscape writes spaces as \x20).
func Unit(execPath string) string {
	return strings.ReplaceAll(UnitTemplate, pathAction, strings.ReplaceAll(execPath, " ", `\x20`))
}

// Scripts holds the maintainer scripts: postinst, prerm, postrm.
//
//go:embed postinst prerm postrm
var Scripts embed.FS

// ManPage is edgegw(1), installed as /usr/share/man/man1/edgegw.1.gz.
//
//go:embed edgegw.1
var ManPage string

// LintianOverrides is installed as /usr/share/lintian/overrides/edgegw.
//
//go:embed lintian-overrides
var LintianOverrides string

// configHeader introduces the packaged configuration.
const configHeader = `# /etc/edgegw/edgegw.yaml: the configuration edgegw.service runs with
# (installed by the edgegw Debian package or by "edgegw service install").
#
# edgegw runs as user edgegw; this file is root:edgegw, mode 0640, so it may hold
# bridge credentials. After a change:
#   edgegw config check /etc/edgegw/edgegw.yaml && systemctl restart edgegw
# Logs: journalctl -u edgegw
#
# The rest of this file is the documented default configuration
# ("edgegw config default") with data_dir set to /var/lib/edgegw.
#
`

// Config returns the packaged configuration: the documented default
// configuration (gateway.DefaultYAML) with data_dir set to DataDir.
func Config() ([]byte, error) {
	def := gateway.DefaultYAML()
	const old = "\ndata_dir: ./data\n"
	if n := bytes.Count(def, []byte(old)); n != 1 {
		return nil, fmt.Errorf("default configuration: found %q %d times, want once", strings.TrimSpace(old), n)
	}
	out := bytes.Replace(def, []byte(old), []byte("\ndata_dir: "+DataDir+"\n"), 1)
	return append([]byte(configHeader), out...), nil
}
