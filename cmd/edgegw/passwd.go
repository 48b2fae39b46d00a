package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"edgegw/gateway/auth"
)

// passwdCmd runs `edgegw passwd FILE USER`: it reads a password and adds the
// user with its bcrypt hash to FILE, or replaces the user's hash, writing FILE
// atomically (auth.SetPassword). On a terminal the password is asked for twice
// without echo; otherwise the first line of stdin is the
// password (for scripts: `printf '%s\n' "$PW" | edgegw passwd FILE USER`).
//
// `edgegw passwd -D FILE USER` deletes the user (as mosquitto_passwd -D); a
// user the file does not hold is an error (exit 1) and the file stays as it is.
func passwdCmd(args []string, stdin *os.File, stdout, stderr io.Writer) int {
	// -D anywhere before a "--", which ends the flags (a user name may start with '-').
	end := slices.Index(args, "--")
	if end < 0 {
		end = len(args)
	}
	del := slices.Contains(args[:end], "-D")
	var pos []string
	for i, a := range args {
		if (i < end && a == "-D") || i == end {
			continue
		}
		pos = append(pos, a)
	}
	args = pos
	if len(args) != 2 {
		return cmdUsageError(stderr, "passwd", "passwd needs FILE and USER")
	}
	file, user := args[0], args[1]
	if err := auth.CheckUsername(user); err != nil {
		fmt.Fprintf(stderr, "edgegw: passwd: %v\n", err)
		return exitUsage
	}
	if del {
		if err := auth.DeletePassword(file, user); err != nil {
			fmt.Fprintf(stderr, "edgegw: passwd: %v\n", err)
			return exitRuntime
		}
		fmt.Fprintf(stdout, "%s: %s deleted\n", file, user)
		return exitOK
	}
	var pw []byte
	var err error
	if term.IsTerminal(int(stdin.Fd())) {
		pw, err = askTwice(stdin, stderr)
	} else {
		pw, err = readLine(stdin)
	}
	if err != nil {
		fmt.Fprintf(stderr, "edgegw: passwd: %v\n", err)
		return exitUsage
	}
	hash, err := auth.HashPassword(pw)
	if err != nil {
		fmt.Fprintf(stderr, "edgegw: passwd: %v\n", err)
		return exitRuntime
	}
	if err := auth.SetPassword(file, user, hash); err != nil {
		fmt.Fprintf(stderr, "edgegw: passwd: %v\n", err)
		return exitRuntime
	}
	fmt.Fprintf(stdout, "%s: password of %s set\n", file, user)
	return exitOK
}

// askTwice asks for the password twice on the terminal tty. Echo is off for
// the whole exchange, prompts included: switching it off per prompt (as
// term.ReadPassword does) leaves a gap in which fast or pasted input is echoed.
func askTwice(tty *os.File, stderr io.Writer) ([]byte, error) {
	restore, err := echoOff(int(tty.Fd()))
	if err != nil {
		return nil, fmt.Errorf("turn off terminal echo: %w", err)
	}
	defer restore()
	r := bufio.NewReader(tty)
	read := func(prompt string) ([]byte, error) {
		fmt.Fprint(stderr, prompt)
		line, err := r.ReadBytes('\n')
		fmt.Fprintln(stderr)
		if err != nil {
			return nil, fmt.Errorf("read password: %w", err)
		}
		return bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r")), nil
	}
	pw, err := read("Password: ")
	if err != nil {
		return nil, err
	}
	again, err := read("Repeat password: ")
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(pw, again) {
		return nil, errors.New("the passwords differ")
	}
	if len(pw) == 0 {
		return nil, errors.New("empty password")
	}
	if len(pw) > 72 {
		return nil, errors.New("password longer than 72 bytes (bcrypt's limit)")
	}
	return pw, nil
}

// echoOff switches off the terminal's echo (line editing and signals stay on)
// and returns the function that restores the previous settings.
func echoOff(fd int) (restore func(), err error) {
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, err
	}
	quiet := *old
	quiet.Lflag &^= unix.ECHO
	quiet.Lflag |= unix.ICANON | unix.ISIG
	quiet.Iflag |= unix.ICRNL
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &quiet); err != nil {
		return nil, err
	}
	return func() { _ = unix.IoctlSetTermios(fd, unix.TCSETS, old) }, nil
}

// readLine reads the password from the first line of r (without its line end).
func readLine(r io.Reader) ([]byte, error) {
	line, err := bufio.NewReader(r).ReadBytes('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read password: %w", err)
	}
	line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
	if len(line) == 0 {
		return nil, errors.New("empty password (give it as the first line of standard input)")
	}
	if len(line) > 72 {
		return nil, errors.New("password longer than 72 bytes (bcrypt's limit)")
	}
	return line, nil
}
