package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/term"

	"edgegw/gateway/auth"
)

// passwdCmd runs `edgegw passwd FILE USER`: it reads a password and adds the
// user with its bcrypt hash to FILE, or replaces the user's hash, writing FILE
// atomically (auth.SetPassword). On a terminal the password is asked for twice
// without echo (golang.org/x/term); otherwise the first line of stdin is the
// password (for scripts: `printf '%s\n' "$PW" | edgegw passwd FILE USER`).
func passwdCmd(args []string, stdin *os.File, stdout, stderr io.Writer) int {
	if len(args) != 2 {
		return usageError(stderr, "passwd needs FILE and USER")
	}
	file, user := args[0], args[1]
	if err := auth.CheckUsername(user); err != nil {
		fmt.Fprintf(stderr, "edgegw: passwd: %v\n", err)
		return exitUsage
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

func askTwice(tty *os.File, stderr io.Writer) ([]byte, error) {
	fmt.Fprint(stderr, "Password: ")
	pw, err := term.ReadPassword(int(tty.Fd()))
	fmt.Fprintln(stderr)
	if err != nil {
		return nil, fmt.Errorf("read password: %w", err)
	}
	fmt.Fprint(stderr, "Repeat password: ")
	again, err := term.ReadPassword(int(tty.Fd()))
	fmt.Fprintln(stderr)
	if err != nil {
		return nil, fmt.Errorf("read password: %w", err)
	}
	if !bytes.Equal(pw, again) {
		return nil, errors.New("the passwords differ")
	}
	if len(pw) == 0 {
		return nil, errors.New("empty password")
	}
	return pw, nil
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
