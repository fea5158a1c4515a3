package auth

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// TokenEntry is one static token of the tokens file. The file holds only
// the token's hash, so it is not a secret: it can be committed and shipped
// like any other configuration.
type TokenEntry struct {
	// Name identifies the token's holder (a job's owner, logs).
	Name string `json:"name"`
	Role Role   `json:"role"`
	// SHA256 is the hex SHA-256 of the token exactly as it follows
	// "Bearer " (printf %s "$TOKEN" | sha256sum).
	SHA256 string `json:"sha256"`
}

// tokensFile is the tokens file's shape: an object rather than a bare
// array, so that a later setting can be added beside the list without
// breaking files written today.
//
//	{"tokens": [{"name": "ci", "role": "admin", "sha256": "<64 hex digits>"}]}
type tokensFile struct {
	Tokens []TokenEntry `json:"tokens"`
}

// tokenPrefix starts every token NewToken makes. A recognizable prefix lets
// secret scanners (gitleaks, push protection rules) and people spot a
// leaked token, and tells a static token from a JWT at a glance.
const tokenPrefix = "jq_"

// tokenBytes is the randomness of a token: 256 bits, beyond any guessing,
// so that a fast unsalted hash is enough to store it.
const tokenBytes = 32

// validName checks a token's name: 1 to 64 ASCII letters, digits and
// ._@-. Names end up in job owners and log lines, where spaces, control
// characters or look-alike letters would only confuse.
func validName(name string) error {
	ok := len(name) >= 1 && len(name) <= 64
	for _, c := range []byte(name) {
		ok = ok && ('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("._@-", c) >= 0)
	}
	if !ok {
		return fmt.Errorf("invalid name %q: 1 to 64 letters, digits, '.', '_', '@' or '-'", name)
	}
	return nil
}

// NewToken makes a token for name with role from 32 bytes of random (pass
// crypto/rand.Reader), and the entry that lists it in the tokens file. The
// token is shown to its holder once and kept nowhere else.
func NewToken(random io.Reader, name string, role Role) (string, TokenEntry, error) {
	if err := validName(name); err != nil {
		return "", TokenEntry{}, err
	}
	if _, err := ParseRole(string(role)); err != nil {
		return "", TokenEntry{}, err
	}
	b := make([]byte, tokenBytes)
	if _, err := io.ReadFull(random, b); err != nil {
		return "", TokenEntry{}, fmt.Errorf("read random bytes: %w", err)
	}
	token := tokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(token))
	return token, TokenEntry{Name: name, Role: role, SHA256: hex.EncodeToString(sum[:])}, nil
}

// LoadTokens reads and checks a tokens file. Every error names the file,
// and the entry (its position from 1, and its name) when one is at fault.
func LoadTokens(path string) ([]TokenEntry, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokens file: %w", err)
	}
	entries, err := parseTokens(data)
	if err != nil {
		return nil, fmt.Errorf("tokens file %s: %w", path, err)
	}
	return entries, nil
}

func parseTokens(data []byte) ([]TokenEntry, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	// A misspelt field ("sha265") would otherwise leave an entry that
	// matches nothing, and nobody would know why.
	dec.DisallowUnknownFields()
	var f tokensFile
	if err := dec.Decode(&f); err != nil {
		return nil, jsonError(data, err)
	}
	if dec.More() {
		return nil, errors.New(`invalid JSON: more data after the object; want {"tokens": [...]}`)
	}
	if len(f.Tokens) == 0 {
		return nil, errors.New(`lists no tokens; want {"tokens": [{"name": ..., "role": ..., "sha256": ...}]}`)
	}
	if err := checkTokens(f.Tokens); err != nil {
		return nil, err
	}
	return f.Tokens, nil
}

// jsonError says where in data a decoding error is, as a line and column.
func jsonError(data []byte, err error) error {
	var offset int64 = -1
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		offset = syntax.Offset
	case errors.As(err, &typ):
		offset = typ.Offset
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New(`invalid JSON: empty or cut short; want {"tokens": [...]}`)
	}
	if offset < 0 {
		return fmt.Errorf("invalid JSON: %w", err)
	}
	before := data[:min(int(offset), len(data))]
	line := bytes.Count(before, []byte("\n")) + 1
	// The offset is just past the offending byte.
	col := max(len(before)-bytes.LastIndexByte(before, '\n')-1, 1)
	return fmt.Errorf("invalid JSON at line %d, column %d: %w", line, col, err)
}

// checkTokens refuses entries that are incomplete, wrong, or that would
// make an identity ambiguous (two entries with one name or one hash).
func checkTokens(entries []TokenEntry) error {
	names := make(map[string]int, len(entries))
	hashes := make(map[string]int, len(entries))
	var errs []error
	for i, e := range entries {
		at := fmt.Sprintf("entry %d (name %q)", i+1, e.Name)
		if err := validName(e.Name); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", at, err))
		}
		if _, err := ParseRole(string(e.Role)); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", at, err))
		}
		if sum, err := hex.DecodeString(e.SHA256); err != nil || len(sum) != sha256.Size {
			errs = append(errs, fmt.Errorf("%s: sha256 must be %d hex digits, got %d characters", at, 2*sha256.Size, len(e.SHA256)))
		} else if first, dup := hashes[hex.EncodeToString(sum)]; dup {
			errs = append(errs, fmt.Errorf("%s: same sha256 as entry %d", at, first))
		} else {
			hashes[hex.EncodeToString(sum)] = i + 1
		}
		if first, dup := names[e.Name]; dup && e.Name != "" {
			errs = append(errs, fmt.Errorf("%s: same name as entry %d", at, first))
		} else {
			names[e.Name] = i + 1
		}
	}
	return errors.Join(errs...)
}

// tokenSet matches presented tokens against the listed hashes.
type tokenSet struct {
	hashes [][sha256.Size]byte
	ids    []Identity
}

func newTokenSet(entries []TokenEntry) (*tokenSet, error) {
	if err := checkTokens(entries); err != nil {
		return nil, err
	}
	s := &tokenSet{hashes: make([][sha256.Size]byte, len(entries)), ids: make([]Identity, len(entries))}
	for i, e := range entries {
		sum, _ := hex.DecodeString(e.SHA256) // checked above
		copy(s.hashes[i][:], sum)
		s.ids[i] = Identity{Name: e.Name, Role: e.Role}
	}
	return s, nil
}

// match returns the identity of the entry whose hash is token's. Every
// entry is compared, in constant time, whether or not an earlier one
// matched: how long it takes tells nothing of which entry, if any, was
// close.
func (s *tokenSet) match(token string) (Identity, bool) {
	sum := sha256.Sum256([]byte(token))
	found := -1
	for i := range s.hashes {
		eq := subtle.ConstantTimeCompare(sum[:], s.hashes[i][:])
		found = subtle.ConstantTimeSelect(eq, i, found)
	}
	if found < 0 {
		return Identity{}, false
	}
	return s.ids[found], true
}

// has reports whether name is a token's name.
func (s *tokenSet) has(name string) bool {
	for _, id := range s.ids {
		if id.Name == name {
			return true
		}
	}
	return false
}
