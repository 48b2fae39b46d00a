package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kardianos/service"

	"edgegw/gateway"
	"edgegw/packaging/deb"
)

const serviceUsage = `usage: edgegw service COMMAND    (systemd; every command but status and unit needs root)
  install    create the user edgegw (groups edgegw, dialout), /var/lib/edgegw and
             /etc/edgegw/edgegw.yaml if missing; write and enable edgegw.service
  uninstall  stop and disable edgegw.service and delete its unit (configuration,
             data and user stay)
  start      start edgegw.service
  stop       stop edgegw.service (SIGTERM: edgegw commits its store and exits)
  restart    restart edgegw.service
  status     print running, stopped or not installed (exit status 0, 3, 4)
  unit       print the systemd unit that install writes
`

// Exit statuses of `edgegw service status`, as LSB init scripts and systemctl use them.
const (
	exitNotRunning   = 3
	exitNotInstalled = 4
)

// packagedUnits are where the Debian package puts the unit (and where
// distributions may move it).
var packagedUnits = []string{deb.UnitPath, "/usr" + deb.UnitPath}

// serviceCmd runs `edgegw service COMMAND` through github.com/kardianos/service,
// with deb.UnitTemplate as its systemd unit, the same unit the Debian package
// installs.
func serviceCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprint(stderr, "edgegw: service needs exactly one command\n"+serviceUsage)
		return exitUsage
	}
	cmd := args[0]
	switch cmd {
	case "install", "uninstall", "start", "stop", "restart", "status", "unit":
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, serviceUsage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "edgegw: service: unknown command %q%s\n%s", cmd,
			didYouMean(cmd, serviceSubs), serviceUsage)
		return exitUsage
	}
	exe, err := executable()
	if err != nil {
		fmt.Fprintf(stderr, "edgegw service %s: %v\n", cmd, err)
		return exitRuntime
	}
	if cmd == "unit" {
		fmt.Fprint(stdout, deb.Unit(exe))
		return exitOK
	}
	if sys := service.ChosenSystem(); sys == nil || sys.String() != "linux-systemd" {
		name := "none"
		if sys != nil {
			name = sys.String()
		}
		fmt.Fprintf(stderr, "edgegw service %s: systemd is not running on this system (service manager found: %s);\n"+
			"run `edgegw run -c FILE` under your supervisor instead\n", cmd, name)
		return exitRuntime
	}
	if cmd != "status" && os.Geteuid() != 0 {
		fmt.Fprintf(stderr, "edgegw service %s: must be run as root (sudo edgegw service %s)\n", cmd, cmd)
		return exitRuntime
	}
	s, err := service.New(program{}, &service.Config{
		Name:        deb.Name,
		DisplayName: "edgegw MQTT edge gateway",
		Description: "edgegw MQTT edge gateway",
		UserName:    deb.User,
		Executable:  exe,
		Arguments:   []string{"run", "-c", deb.ConfigPath}, // as written in deb.UnitTemplate
		Option:      service.KeyValue{"SystemdScript": deb.UnitTemplate},
	})
	if err != nil {
		fmt.Fprintf(stderr, "edgegw service %s: %v\n", cmd, err)
		return exitRuntime
	}
	switch cmd {
	case "install":
		err = serviceInstall(s, exe, stdout)
	case "uninstall":
		err = serviceUninstall(s, stdout)
	case "start":
		err = s.Start()
	case "stop":
		err = s.Stop()
	case "restart":
		err = s.Restart()
	case "status":
		return serviceStatus(s, stdout, stderr)
	}
	if err != nil {
		fmt.Fprintf(stderr, "edgegw service %s: %v\n", cmd, err)
		if cmd == "start" || cmd == "restart" || cmd == "stop" {
			fmt.Fprintln(stderr, "see: systemctl status edgegw; journalctl -u edgegw")
		}
		return exitRuntime
	}
	return exitOK
}

// program is the kardianos/service Interface. edgegw never calls Service.Run:
// systemd runs `edgegw run`, which handles SIGTERM itself.
type program struct{}

func (program) Start(service.Service) error { return errors.New("not used: systemd runs edgegw run") }
func (program) Stop(service.Service) error  { return nil }

// executable returns the absolute path of the running binary, symlinks resolved.
func executable() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(exe)
}

func serviceInstall(s service.Service, exe string, stdout io.Writer) error {
	for _, p := range packagedUnits {
		if _, err := os.Stat(p); err == nil {
			return fmt.Errorf("%s exists: edgegw.service comes with the edgegw Debian package; "+
				"use edgegw service start|stop|restart|status (or systemctl)", p)
		}
	}
	uid, gid, err := ensureUser(stdout)
	if err != nil {
		return err
	}
	if err := ensureDir(deb.DataDir, deb.DataDirMode, uid, gid); err != nil {
		return err
	}
	if err := ensureConfig(gid, stdout); err != nil {
		return err
	}
	if err := s.Install(); err != nil {
		if strings.Contains(err.Error(), "already exists") {
			return fmt.Errorf("edgegw.service is already installed (%v); run edgegw service uninstall first", err)
		}
		return err
	}
	fmt.Fprintf(stdout, "installed and enabled /etc/systemd/system/%s running %s as user %s\n", deb.UnitName, exe, deb.User)
	fmt.Fprintln(stdout, "start it with: edgegw service start; logs: journalctl -u edgegw")
	return nil
}

// ensureUser creates the system user edgegw (primary group edgegw, member of
// dialout) unless it exists, and returns its uid and gid.
func ensureUser(stdout io.Writer) (uid, gid int, err error) {
	if _, err := user.Lookup(deb.User); err != nil {
		var unknown user.UnknownUserError
		if !errors.As(err, &unknown) {
			return 0, 0, fmt.Errorf("look up user %s: %w", deb.User, err)
		}
		if err := runTool("useradd", "--system", "--user-group", "--home-dir", deb.DataDir, "--no-create-home",
			"--shell", "/usr/sbin/nologin", "--comment", "edgegw MQTT gateway", deb.User); err != nil {
			return 0, 0, err
		}
		fmt.Fprintf(stdout, "created system user %s\n", deb.User)
	}
	u, err := user.Lookup(deb.User)
	if err != nil {
		return 0, 0, fmt.Errorf("look up user %s: %w", deb.User, err)
	}
	if _, err := user.LookupGroup(deb.SerialGroup); err == nil {
		if err := runTool("usermod", "--append", "--groups", deb.SerialGroup, deb.User); err != nil {
			return 0, 0, err
		}
	}
	uid, err = strconv.Atoi(u.Uid)
	if err == nil {
		gid, err = strconv.Atoi(u.Gid)
	}
	return uid, gid, err
}

// ensureDir creates dir if missing and sets its owner and mode.
func ensureDir(dir string, mode fs.FileMode, uid, gid int) error {
	if err := os.MkdirAll(dir, mode); err != nil {
		return err
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		return err
	}
	return os.Chmod(dir, mode)
}

// ensureConfig writes the packaged configuration to deb.ConfigPath (root:edgegw,
// 0640) unless a configuration is there already, which it only checks.
func ensureConfig(gid int, stdout io.Writer) error {
	if err := os.MkdirAll(deb.ConfigDir, 0o755); err != nil {
		return err
	}
	if _, err := os.Stat(deb.ConfigPath); err == nil {
		if _, err := gateway.CheckConfig(deb.ConfigPath); err != nil {
			return fmt.Errorf("existing configuration %s: %w", deb.ConfigPath, err)
		}
		fmt.Fprintf(stdout, "kept the existing configuration %s\n", deb.ConfigPath)
		return nil
	}
	cfg, err := deb.Config()
	if err != nil {
		return err
	}
	f, err := os.OpenFile(deb.ConfigPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, deb.ConfigMode)
	if err != nil {
		return err
	}
	if _, err := f.Write(cfg); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chown(deb.ConfigPath, 0, gid); err != nil {
		return err
	}
	if err := os.Chmod(deb.ConfigPath, deb.ConfigMode); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote the default configuration %s\n", deb.ConfigPath)
	return nil
}

// runTool runs an administration command, returning its output in the error.
func runTool(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func serviceUninstall(s service.Service, stdout io.Writer) error {
	if _, err := os.Stat("/etc/systemd/system/" + deb.UnitName); errors.Is(err, fs.ErrNotExist) {
		for _, p := range packagedUnits {
			if _, err := os.Stat(p); err == nil {
				return fmt.Errorf("edgegw.service comes with the edgegw Debian package (%s): remove it with apt remove edgegw", p)
			}
		}
		return errors.New("edgegw.service is not installed")
	}
	_ = s.Stop() // it may not be running
	if err := s.Uninstall(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "stopped, disabled and removed %s; kept %s, %s and user %s\n",
		deb.UnitName, deb.ConfigPath, deb.DataDir, deb.User)
	return nil
}

func serviceStatus(s service.Service, stdout, stderr io.Writer) int {
	st, err := s.Status()
	switch {
	case errors.Is(err, service.ErrNotInstalled):
		fmt.Fprintln(stdout, "not installed")
		return exitNotInstalled
	case err != nil:
		fmt.Fprintf(stderr, "edgegw service status: %v\n", err)
		return exitRuntime
	case st == service.StatusRunning:
		fmt.Fprintln(stdout, "running")
		return exitOK
	case st == service.StatusStopped:
		fmt.Fprintln(stdout, "stopped")
		return exitNotRunning
	default:
		fmt.Fprintln(stdout, "unknown")
		return exitRuntime
	}
}
