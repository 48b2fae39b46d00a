// Command edgegw is the edgegw MQTT edge gateway.
//
// Usage:
//
//	edgegw run [-c FILE]        run the gateway (default configuration without -c);
//	                            SIGHUP reloads the configuration and TLS files
//	edgegw config default       print the documented default configuration
//	edgegw config check FILE    check a configuration file
//	edgegw config import-mosquitto FILE
//	                            print an edgegw.yaml for a mosquitto.conf
//	edgegw version              print the version
//	edgegw service COMMAND      install, uninstall, start, stop, restart, status (systemd)
//	edgegw passwd FILE USER     add or update USER in the password file FILE
//	edgegw passwd -D FILE USER  delete USER from the password file FILE
//	edgegw store check FILE     check a store file
//	edgegw status               the running gateway at a glance (admin API)
//	edgegw sessions [list|show ID|kick ID|purge ID]
//	edgegw meters               meters and serial ports of the running gateway
//	edgegw meters scan PORT     find the Modbus units on a bus
//	edgegw meters read PORT     read registers ad hoc
//	edgegw bridge               bridges of the running gateway
//	edgegw reload               re-read the configuration file, print what changed
//
// -h or --help after any command prints its usage (flags in the --name form);
// -V or --version anywhere prints the version. An unknown command, subcommand
// or flag names the nearest known one ("did you mean status?").
//
// Exit status: 0 on success, 1 on runtime errors, 2 on usage errors and invalid
// configuration.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"syscall"
	"time"

	"edgegw/gateway"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit statuses.
const (
	exitOK      = 0
	exitRuntime = 1 // the gateway failed, or a file could not be read
	exitUsage   = 2 // bad command line or invalid configuration
)

const usage = `usage:
  edgegw run [-c FILE]        run the gateway (default configuration without -c)
  edgegw config default       print the documented default configuration
  edgegw config check FILE    check a configuration file
  edgegw config import-mosquitto FILE
                              print an edgegw.yaml for a mosquitto.conf, listing
                              what it could not carry over
  edgegw version              print the version
  edgegw service COMMAND      install|uninstall|start|stop|restart|status|unit (systemd)
  edgegw passwd FILE USER     add or update USER in the password file FILE (bcrypt);
                              the password is asked for on a terminal, else read
                              from the first line of standard input
  edgegw passwd -D FILE USER  delete USER from the password file FILE
  edgegw store check FILE     check a store file (data_dir/edgegw.db; run does it
                              at start-up): exit 0 sound, 3 damaged, 1 unreadable
  edgegw status               the running gateway at a glance
  edgegw sessions [list | show ID | kick ID | purge ID]
  edgegw meters               meters and serial ports of the running gateway
  edgegw meters scan PORT|HOST:PORT [--units 1-247] [--baud 9600,19200] [--parity N,E]
                              find the Modbus units on a bus, with their device
                              identification (through the gateway when it owns PORT)
  edgegw meters read PORT|HOST:PORT --unit N --address A [--count C] [--type T]
                              read registers ad hoc and print them decoded
  edgegw bridge               bridges of the running gateway
  edgegw reload               make the running gateway re-read its configuration
                              file and print what changed (as SIGHUP does)
  (status, sessions, meters, bridge, reload: [-c FILE | --socket PATH] [--token-file FILE] [--json])
  -h, --help after any command prints its usage; -V, --version anywhere prints the version
`

func main() {
	os.Exit(cli(os.Args[1:], os.Stdout, os.Stderr))
}

// cli runs the command line args (without the program name) and returns the exit
// status.
func cli(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		return usageError(stderr, "missing command")
	}
	if hasArg(args, versionFlags...) {
		return versionCmd(stdout)
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "config", "version", "store", "passwd", "service":
		if hasArg(rest, helpFlags...) {
			if cmd == "service" {
				fmt.Fprint(stdout, serviceUsage)
			} else {
				fmt.Fprint(stdout, commandUsage(cmd))
			}
			return exitOK
		}
		if bad, near := strayFlag(rest, flagsOf(cmd)...); bad != "" {
			name := cmd
			if c, _, _ := lookupCommand(cmd); len(rest) > 0 && slices.Contains(c.subs, rest[0]) {
				name += " " + rest[0]
			}
			return cmdUsageError(stderr, cmd, fmt.Sprintf("%s: unknown flag %s%s", name, bad, near))
		}
	}
	c, ok, names := lookupCommand(cmd)
	if !ok {
		return usageError(stderr, fmt.Sprintf("unknown command %q%s", cmd, didYouMean(cmd, names)))
	}
	return c.run(rest, stdout, stderr)
}

// versionCmd prints the version: `edgegw version`, and -V or --version
// anywhere on the line.
func versionCmd(stdout io.Writer) int {
	fmt.Fprintf(stdout, "edgegw %s (%s %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return exitOK
}

// cmdUsageError is usageError with only command cmd's usage lines.
func cmdUsageError(stderr io.Writer, cmd, msg string) int {
	fmt.Fprintf(stderr, "edgegw: %s\n%s", msg, commandUsage(cmd))
	return exitUsage
}

func usageError(stderr io.Writer, msg string) int {
	fmt.Fprintf(stderr, "edgegw: %s\n%s", msg, usage)
	return exitUsage
}

// runCmd runs the gateway until SIGINT or SIGTERM. Signals are handled from its
// first instruction: SIGINT or SIGTERM during start-up stops it cleanly (exit
// 0, the store untouched); SIGHUP never kills it (one that comes while it
// starts reloads the configuration once it serves). A second SIGINT/SIGTERM,
// once shutdown started, kills the process the default way.
//
// Start-up order: configuration, the data_dir lock (a second process exits
// here, status 1, with one line naming the holder), the store check, then
// the gateway.
func runCmd(args []string, stdout, stderr io.Writer) int {
	started := time.Now()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(ctx, stop) // restore default signal handling once shutdown starts
	// SIGHUP reloads the configuration file (and the TLS listeners' files).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	fs := flag.NewFlagSet("edgegw run", flag.ContinueOnError)
	var path string
	fs.StringVar(&path, "config", "", "configuration `FILE` (default: the built-in default configuration)")
	fs.StringVar(&path, "c", "", shorthandOf("config"))
	usage := func(w io.Writer) {
		fmt.Fprint(w, "usage: edgegw run [-c FILE]\nflags:\n")
		printFlags(w, fs)
	}
	if _, code, done := parseFlags(fs, "run", args, stdout, stderr, usage,
		func(a []string) ([]string, error) { return nil, fs.Parse(a) }); done {
		return code
	}
	if fs.NArg() != 0 {
		return cmdUsageError(stderr, "run", fmt.Sprintf("run: unexpected argument %q", fs.Arg(0)))
	}

	cfg := gateway.DefaultConfig()
	if path != "" {
		var err error
		if cfg, err = gateway.LoadConfig(path); err != nil {
			return configError(stderr, err)
		}
	}
	cfg.Version = version
	lock, err := lockDataDir(cfg.DataDir, started)
	if err != nil {
		fmt.Fprintf(stderr, "edgegw: %v\n", err)
		return exitRuntime
	}
	defer lock.Close()
	level := new(slog.LevelVar) // log.level; a reload sets it
	level.Set(cfg.Log.SlogLevel())
	log := cfg.Log.LoggerAt(stderr, level)

	configName := path
	if configName == "" {
		configName = "(default)"
	}
	log.Info("edgegw starting", "version", version, "config", configName, "pid", os.Getpid())
	if err := checkStore(ctx, cfg, log); errors.Is(err, errInterrupted) {
		log.Info("edgegw stopped while checking the store; the store was not touched")
		return exitOK
	} else if err != nil {
		log.Error("edgegw cannot start: " + err.Error())
		return exitRuntime
	}
	if ctx.Err() != nil { // stopped before the store was opened
		log.Info("edgegw stopped during start-up; the store was not touched")
		return exitOK
	}
	if err := gateway.Run(ctx, cfg, log, gateway.RunOptions{ConfigFile: path, Level: level, Reload: hup}); err != nil {
		log.Error("edgegw failed", "err", err)
		return exitRuntime
	}
	log.Info("edgegw stopped")
	return exitOK
}

func configCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		return cmdUsageError(stderr, "config", "config: missing subcommand (default, check or import-mosquitto)")
	}
	switch sub, rest := args[0], args[1:]; sub {
	case "default":
		if len(rest) != 0 {
			return cmdUsageError(stderr, "config", "config default takes no arguments")
		}
		if _, err := stdout.Write(gateway.DefaultYAML()); err != nil {
			fmt.Fprintf(stderr, "edgegw: %v\n", err)
			return exitRuntime
		}
		return exitOK
	case "check":
		if len(rest) != 1 {
			return cmdUsageError(stderr, "config", "config check needs exactly one FILE")
		}
		file := rest[0]
		warnings, err := gateway.CheckConfig(file)
		if err != nil {
			return configError(stderr, err)
		}
		for _, w := range warnings {
			fmt.Fprintf(stderr, "%s: warning: %s\n", file, w)
		}
		fmt.Fprintf(stdout, "%s: ok\n", file)
		return exitOK
	case "import-mosquitto":
		return importMosquittoCmd(rest, stdout, stderr)
	default:
		return cmdUsageError(stderr, "config", fmt.Sprintf("config: unknown subcommand %q%s", sub,
			didYouMean(sub, configSubs)))
	}
}

// configError reports an error of gateway.LoadConfig or gateway.CheckConfig.
// Problems in a configuration's content (each line already names file, line and
// key) give exitUsage; others, such as a file that cannot be read, exitRuntime.
func configError(stderr io.Writer, err error) int {
	var ce *gateway.ConfigError
	if errors.As(err, &ce) {
		fmt.Fprintln(stderr, err)
		return exitUsage
	}
	fmt.Fprintf(stderr, "edgegw: %v\n", err)
	return exitRuntime
}
