package gorillaws

import (
	"encoding"
	"encoding/json"
	"reflect"
	"strconv"
	"sync"
)

// This file is WriteJSON's encoder. gqlgen sends every websocket message as a
// small struct (graphqltransportwsMessage or graphqlwsMessage) whose fields
// are strings and a json.RawMessage payload that gqlgen itself produced with
// json.Marshal. encoding/json would compact and re-validate that payload on
// every message, which is about half of the cost of encoding a subscription
// event. The encoder below plans such flat structs once per type and writes
// the payload bytes as they are. Anything it does not fully understand goes to
// json.Marshal, so it is never wrong about a type, only sometimes not faster.
//
// Output is byte-identical to json.Marshal for every supported type, with one
// documented exception: a json.RawMessage is written unchanged, whereas
// json.Marshal compacts it, escapes <, > and & in it and rejects it if it is
// not valid JSON. Payloads produced by json.Marshal (all of gqlgen's, except
// the echo of a client's ping payload in a graphql-transport-ws pong) are
// already compact and escaped, so for them the bytes are the same.

var (
	rawMessageType    = reflect.TypeFor[json.RawMessage]()
	jsonMarshalerType = reflect.TypeFor[json.Marshaler]()
	textMarshalerType = reflect.TypeFor[encoding.TextMarshaler]()
)

// fieldKind is how a planned field is encoded.
type fieldKind uint8

const (
	kindString     fieldKind = iota // string kind, no marshaler methods
	kindTextString                  // string kind with a value-receiver MarshalText
	kindRaw                         // json.RawMessage
	kindBool
	kindInt
	kindUint
)

type fieldPlan struct {
	index     int
	key       string // `"name":`
	kind      fieldKind
	omitEmpty bool
}

// encPlan is the encoding of one type. ok is false for types the encoder
// does not support; those are cached too, so they are inspected only once.
type encPlan struct {
	ok     bool
	ptr    bool // the type is *T; fields are T's
	fields []fieldPlan
}

// plans caches an *encPlan per reflect.Type. The set of types passed to
// WriteJSON is fixed by the program, so the cache stays small.
var plans sync.Map

func planFor(t reflect.Type) *encPlan {
	if p, ok := plans.Load(t); ok {
		return p.(*encPlan)
	}
	p, _ := plans.LoadOrStore(t, buildPlan(t))
	return p.(*encPlan)
}

var unsupported = &encPlan{}

// buildPlan plans a struct, or a pointer to a struct, whose exported fields
// are all plannable. It is deliberately conservative: embedded fields, the
// ",string" and ",omitzero" options, keys that would need escaping, duplicate
// keys, marshaler methods other than a string type's value-receiver
// MarshalText, and any other field type make the type unsupported.
func buildPlan(t reflect.Type) *encPlan {
	p := &encPlan{ok: true}
	if t.Kind() == reflect.Pointer {
		p.ptr = true
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || hasMarshaler(t) {
		return unsupported
	}
	seen := make(map[string]bool, t.NumField())
	for i := range t.NumField() {
		sf := t.Field(i)
		if sf.Anonymous {
			return unsupported
		}
		if !sf.IsExported() {
			continue
		}
		tag := sf.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts := tag, ""
		for j := range len(tag) {
			if tag[j] == ',' {
				name, opts = tag[:j], tag[j+1:]
				break
			}
		}
		if name == "" {
			name = sf.Name
		}
		if !plainKey(name) || seen[name] {
			return unsupported
		}
		seen[name] = true

		f := fieldPlan{index: i, key: `"` + name + `":`}
		for opts != "" {
			var opt string
			opt, opts = opts, ""
			for j := range len(opt) {
				if opt[j] == ',' {
					opt, opts = opt[:j], opt[j+1:]
					break
				}
			}
			switch opt {
			case "omitempty":
				f.omitEmpty = true
			case "string", "omitzero":
				return unsupported
			}
			// encoding/json ignores unknown options; so do we.
		}
		kind, ok := kindOf(sf.Type)
		if !ok {
			return unsupported
		}
		f.kind = kind
		p.fields = append(p.fields, f)
	}
	return p
}

// hasMarshaler reports whether encoding/json would call a MarshalJSON or
// MarshalText method of t (on an addressable value, as gqlgen's are).
func hasMarshaler(t reflect.Type) bool {
	pt := reflect.PointerTo(t)
	return pt.Implements(jsonMarshalerType) || pt.Implements(textMarshalerType)
}

func kindOf(t reflect.Type) (fieldKind, bool) {
	if t == rawMessageType {
		return kindRaw, true
	}
	switch t.Kind() {
	case reflect.String:
		pt := reflect.PointerTo(t)
		switch {
		case pt.Implements(jsonMarshalerType):
			return 0, false
		case t.Implements(textMarshalerType):
			// gqlgen's message type names (e.g. graphqltransportwsMessageType)
			// have a value-receiver MarshalText; encoding/json uses it.
			return kindTextString, true
		case pt.Implements(textMarshalerType):
			return 0, false // used by encoding/json only when addressable
		}
		return kindString, true
	case reflect.Bool:
		return kindBool, !hasMarshaler(t)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return kindInt, !hasMarshaler(t)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return kindUint, !hasMarshaler(t)
	}
	return 0, false
}

// plainKey reports whether name is a non-empty run of ASCII letters, digits,
// '_' and '-': a key encoding/json accepts as a tag name and writes without
// escaping.
func plainKey(name string) bool {
	if name == "" {
		return false
	}
	for i := range len(name) {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// appendJSON appends the JSON encoding of v to dst: with a plan when v's type
// has one, else with json.Marshal. On error dst is returned unchanged (up to
// its length) along with json.Marshal's error.
func appendJSON(dst []byte, v any) ([]byte, error) {
	if v != nil {
		if p := planFor(reflect.TypeOf(v)); p.ok {
			if out, ok := p.appendValue(dst, reflect.ValueOf(v)); ok {
				return out, nil
			}
			// A MarshalText error or an empty non-nil RawMessage: let
			// encoding/json produce its usual error (or encoding).
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return dst, err
	}
	return append(dst, b...), nil
}

// appendValue encodes rv (of the planned type). It returns false, with dst
// possibly extended, when the value needs encoding/json after all.
func (p *encPlan) appendValue(dst []byte, rv reflect.Value) ([]byte, bool) {
	if p.ptr {
		if rv.IsNil() {
			return append(dst, "null"...), true
		}
		rv = rv.Elem()
	}
	dst = append(dst, '{')
	first := true
	for i := range p.fields {
		f := &p.fields[i]
		fv := rv.Field(f.index)
		switch f.kind {
		case kindString:
			s := fv.String()
			if f.omitEmpty && s == "" {
				continue
			}
			dst = appendKey(dst, f.key, &first)
			dst = appendString(dst, s)
		case kindTextString:
			if f.omitEmpty && fv.Len() == 0 {
				continue
			}
			var m encoding.TextMarshaler
			if fv.CanAddr() {
				m = fv.Addr().Interface().(encoding.TextMarshaler) // no allocation
			} else {
				m = fv.Interface().(encoding.TextMarshaler)
			}
			b, err := m.MarshalText()
			if err != nil {
				return dst, false
			}
			dst = appendKey(dst, f.key, &first)
			dst = appendString(dst, b)
		case kindRaw:
			b := fv.Bytes()
			if len(b) == 0 {
				if f.omitEmpty {
					continue
				}
				if b != nil {
					return dst, false // encoding/json rejects an empty RawMessage
				}
				dst = appendKey(dst, f.key, &first)
				dst = append(dst, "null"...)
				continue
			}
			dst = appendKey(dst, f.key, &first)
			dst = append(dst, b...)
		case kindBool:
			b := fv.Bool()
			if f.omitEmpty && !b {
				continue
			}
			dst = appendKey(dst, f.key, &first)
			dst = strconv.AppendBool(dst, b)
		case kindInt:
			n := fv.Int()
			if f.omitEmpty && n == 0 {
				continue
			}
			dst = appendKey(dst, f.key, &first)
			dst = strconv.AppendInt(dst, n, 10)
		case kindUint:
			n := fv.Uint()
			if f.omitEmpty && n == 0 {
				continue
			}
			dst = appendKey(dst, f.key, &first)
			dst = strconv.AppendUint(dst, n, 10)
		}
	}
	return append(dst, '}'), true
}

func appendKey(dst []byte, key string, first *bool) []byte {
	if !*first {
		dst = append(dst, ',')
	}
	*first = false
	return append(dst, key...)
}

// plainByte[b] is true for the bytes encoding/json copies into a string
// unchanged (with HTML escaping on, as json.Marshal has): printable ASCII
// other than '"', '\\', '<', '>' and '&'.
var plainByte = func() (t [256]bool) {
	for b := 0x20; b < 0x80; b++ {
		t[b] = true
	}
	for _, b := range []byte{'"', '\\', '<', '>', '&'} {
		t[b] = false
	}
	return t
}()

// appendString appends s as a JSON string exactly as json.Marshal encodes it.
// Plain ASCII (gqlgen's ids and message types) is copied directly; anything
// else goes through json.Marshal, so escaping is encoding/json's by
// construction.
func appendString[S ~string | ~[]byte](dst []byte, s S) []byte {
	for i := range len(s) {
		if !plainByte[s[i]] {
			b, _ := json.Marshal(string(s)) // a string always encodes
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}
