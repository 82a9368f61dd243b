package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"unicode/utf8"
)

var (
	rawMessageType = reflect.TypeFor[json.RawMessage]()
	anyType        = reflect.TypeFor[any]()
)

// maxDepth bounds nesting so hostile input cannot recurse deeply.
const maxDepth = 16

// StrictUnmarshal decodes JSON into v, which must be a pointer to a struct. On
// top of encoding/json it refuses: keys that are not an exact (case-sensitive)
// field name, the same key twice in one object, invalid UTF-8 anywhere,
// nesting beyond a small depth, and anything after the value. encoding/json
// alone accepts all of these, and each is a way to make two readers disagree
// about what a row says. A field of type any or json.RawMessage takes any JSON
// value (a tool's schema, a tool call's arguments), checked the same way for
// duplicate keys and depth at every level.
func StrictUnmarshal(data []byte, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return errors.New("wire: StrictUnmarshal needs a non-nil pointer")
	}
	if !utf8.Valid(data) {
		return errors.New("invalid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := checkValue(dec, rv.Elem().Type(), 0); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON value")
	}
	dec = json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// checkValue walks one JSON value from dec against the Go type t.
func checkValue(dec *json.Decoder, t reflect.Type, depth int) error {
	if depth > maxDepth {
		return errors.New("nesting too deep")
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == rawMessageType {
		t = anyType
	}
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	delim, isDelim := tok.(json.Delim)
	if !isDelim {
		return nil // scalars: encoding/json checks their types
	}
	switch delim {
	case '{':
		seen := map[string]bool{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return err
			}
			key := kt.(string)
			if seen[key] {
				return fmt.Errorf("duplicate key %q", key)
			}
			seen[key] = true
			ft, err := fieldType(t, key)
			if err != nil {
				return err
			}
			if err := checkValue(dec, ft, depth+1); err != nil {
				return err
			}
		}
	case '[':
		var et reflect.Type
		switch t.Kind() {
		case reflect.Slice, reflect.Array:
			et = t.Elem()
		case reflect.Interface:
			et = t
		default:
			return fmt.Errorf("unexpected array for %s", t)
		}
		for dec.More() {
			if err := checkValue(dec, et, depth+1); err != nil {
				return err
			}
		}
	}
	_, err = dec.Token() // closing delimiter
	return err
}

// fieldType finds the field of struct (or map) type t that key names exactly.
func fieldType(t reflect.Type, key string) (reflect.Type, error) {
	switch t.Kind() {
	case reflect.Map:
		return t.Elem(), nil
	case reflect.Interface:
		return t, nil // any JSON object: its keys are free, never repeated
	case reflect.Struct:
	default:
		return nil, fmt.Errorf("unexpected object for %s", t)
	}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if name == key {
			return f.Type, nil
		}
	}
	return nil, fmt.Errorf("unknown key %q", key)
}
