package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/jobqueue/jobqueue/internal/auth"
)

const tokenUsage = `Usage: server token new --name NAME --role ROLE

Makes a static API token. Prints the token (shown this once: keep it
secret) and then the JSON entry to add to the "tokens" list of the file
API_TOKENS_FILE names; the entry holds only the token's SHA-256.

  NAME  who holds the token: 1 to 64 letters, digits, '.', '_', '@', '-'
  ROLE  admin, viewer or user
`

// tokenCommand runs "server token ...". Standard output gets exactly two
// lines, the token and the entry, so that scripts can read them; the
// explanation goes to stderr.
func tokenCommand(args []string, random io.Reader, stdout, stderr io.Writer) error {
	usage := func(err error) error {
		fmt.Fprint(stderr, tokenUsage)
		return fmt.Errorf("token: %w", err)
	}
	if len(args) == 0 || args[0] != "new" {
		return usage(errors.New(`want the subcommand "new"`))
	}
	fs := flag.NewFlagSet("server token new", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	name := fs.String("name", "", "who holds the token")
	role := fs.String("role", "", "admin, viewer or user")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, tokenUsage)
			return nil
		}
		return usage(err)
	}
	switch {
	case fs.NArg() > 0:
		return usage(fmt.Errorf("unexpected arguments: %v", fs.Args()))
	case *name == "":
		return usage(errors.New("--name is required"))
	case *role == "":
		return usage(errors.New("--role is required"))
	}
	r, err := auth.ParseRole(*role)
	if err != nil {
		return usage(err)
	}
	token, entry, err := auth.NewToken(random, *name, r)
	if err != nil {
		return usage(err)
	}
	line, err := json.Marshal(entry)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	fmt.Fprintf(stdout, "%s\n%s\n", token, line)
	fmt.Fprintf(stderr, "The first line is the token for %q: it is shown only this once. Clients send it as\n  Authorization: Bearer <token>\nThe second line is its entry: add it to the \"tokens\" list of API_TOKENS_FILE, e.g.\n  {\"tokens\": [\n    %s\n  ]}\n", entry.Name, line)
	return nil
}
