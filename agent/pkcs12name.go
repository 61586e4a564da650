package agent

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"unicode/utf16"
)

// go-pkcs12's encoder writes no friendly name on the key entry, and Java
// names a PKCS#12 key entry after it (without one, "1"). withFriendlyName
// adds it: the key bag sits in the PFX's unencrypted SafeContents (the key
// itself stays encrypted), so the attribute can be added there, after
// which the MAC over the authenticated safe is computed again with the
// password (RFC 7292: the PKCS#12 key derivation, HMAC-SHA-256 as the
// modern encoder does).

// The ASN.1 of a PFX, as far as it is read here (RFC 7292).
type (
	pfxPDU struct {
		Version  int
		AuthSafe pfxContentInfo
		MacData  pfxMacData `asn1:"optional"`
	}
	pfxContentInfo struct {
		ContentType asn1.ObjectIdentifier
		Content     asn1.RawValue `asn1:"tag:0,explicit,optional"`
	}
	pfxMacData struct {
		Mac struct {
			Algorithm pkix.AlgorithmIdentifier
			Digest    []byte
		}
		MacSalt    []byte
		Iterations int `asn1:"optional,default:1"`
	}
	pfxSafeBag struct {
		ID         asn1.ObjectIdentifier
		Value      asn1.RawValue     `asn1:"tag:0,explicit"`
		Attributes []pfxBagAttribute `asn1:"set,optional"`
	}
	pfxBagAttribute struct {
		ID    asn1.ObjectIdentifier
		Value asn1.RawValue `asn1:"set"`
	}
)

// withFriendlyName returns the PFX with name as the friendlyName of its
// key bag, MACed again under password.
func withFriendlyName(pfx []byte, name, password string) ([]byte, error) {
	var (
		oidData       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
		oidShroudedKB = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 10, 1, 2}
		oidSHA256     = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	)
	var p pfxPDU
	if err := unmarshalAll(pfx, &p); err != nil {
		return nil, err
	}
	if !p.AuthSafe.ContentType.Equal(oidData) || !p.MacData.Mac.Algorithm.Algorithm.Equal(oidSHA256) {
		return nil, errors.New("not a PFX with data content and an HMAC-SHA-256 MAC")
	}
	var authSafeBytes []byte
	if err := unmarshalAll(p.AuthSafe.Content.Bytes, &authSafeBytes); err != nil {
		return nil, err
	}
	var authSafe []pfxContentInfo
	if err := unmarshalAll(authSafeBytes, &authSafe); err != nil {
		return nil, err
	}
	attr, err := friendlyNameAttribute(name)
	if err != nil {
		return nil, err
	}
	found := false
	for i, ci := range authSafe {
		if !ci.ContentType.Equal(oidData) {
			continue // encrypted: the certificates
		}
		var contents []byte
		if err := unmarshalAll(ci.Content.Bytes, &contents); err != nil {
			return nil, err
		}
		var bags []pfxSafeBag
		if err := unmarshalAll(contents, &bags); err != nil {
			return nil, err
		}
		for j := range bags {
			if bags[j].ID.Equal(oidShroudedKB) {
				bags[j].Attributes = append(bags[j].Attributes, attr)
				found = true
			}
		}
		if contents, err = asn1.Marshal(bags); err != nil {
			return nil, err
		}
		if authSafe[i].Content, err = explicitOctets(contents); err != nil {
			return nil, err
		}
	}
	if !found {
		return nil, errors.New("PKCS#12 structure: no key bag in the unencrypted contents")
	}
	if authSafeBytes, err = asn1.Marshal(authSafe); err != nil {
		return nil, err
	}
	if p.AuthSafe.Content, err = explicitOctets(authSafeBytes); err != nil {
		return nil, err
	}
	bmpPassword, err := bmpString(password + "\x00")
	if err != nil {
		return nil, fmt.Errorf("password: %w", err)
	}
	key := pkcs12KDF(bmpPassword, p.MacData.MacSalt, p.MacData.Iterations, 3, sha256.Size)
	mac := hmac.New(sha256.New, key)
	mac.Write(authSafeBytes)
	p.MacData.Mac.Digest = mac.Sum(nil)
	return asn1.Marshal(p)
}

// explicitOctets is the [0] EXPLICIT OCTET STRING content of a
// ContentInfo, new: a decoded RawValue keeps its original encoding
// (FullBytes), which Marshal would write instead of changed Bytes.
func explicitOctets(b []byte) (asn1.RawValue, error) {
	octets, err := asn1.Marshal(b)
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: octets}, err
}

// friendlyNameAttribute is the PKCS#9 friendlyName attribute: a set of one
// BMPString.
func friendlyNameAttribute(name string) (pfxBagAttribute, error) {
	bmp, err := bmpString(name)
	if err != nil {
		return pfxBagAttribute{}, fmt.Errorf("friendly name: %w", err)
	}
	value, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagBMPString, Bytes: bmp})
	if err != nil {
		return pfxBagAttribute{}, err
	}
	oidFriendlyName := asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 20}
	return pfxBagAttribute{ID: oidFriendlyName,
		Value: asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSet, IsCompound: true, Bytes: value}}, nil
}

// bmpString is s in UCS-2, big endian: characters beyond the Basic
// Multilingual Plane have no BMPString form.
func bmpString(s string) ([]byte, error) {
	out := make([]byte, 0, 2*len(s))
	for _, r := range s {
		if r > 0xFFFF || utf16.IsSurrogate(r) {
			return nil, fmt.Errorf("%U is outside the Basic Multilingual Plane", r)
		}
		out = append(out, byte(r>>8), byte(r))
	}
	return out, nil
}

// pkcs12KDF is the key derivation of RFC 7292 appendix B.2 with SHA-256
// (u = 32, v = 64 bytes): id 3 derives MAC keys.
func pkcs12KDF(password, salt []byte, iterations, id, size int) []byte {
	const u, v = sha256.Size, 64
	repeatTo := func(b []byte) []byte { // b repeated to a multiple of v bytes
		if len(b) == 0 {
			return nil
		}
		out := make([]byte, v*((len(b)+v-1)/v))
		for i := range out {
			out[i] = b[i%len(b)]
		}
		return out
	}
	d := make([]byte, v)
	for i := range d {
		d[i] = byte(id)
	}
	in := append(repeatTo(salt), repeatTo(password)...)
	var out []byte
	for len(out) < size {
		h := sha256.New()
		h.Write(d)
		h.Write(in)
		a := h.Sum(nil)
		for range iterations - 1 {
			sum := sha256.Sum256(a)
			a = sum[:]
		}
		out = append(out, a...)
		// Each v-byte block of in becomes (block + B + 1) mod 2^(8v),
		// where B is a repeated to v bytes.
		for j := 0; j < len(in); j += v {
			carry := 1
			for k := v - 1; k >= 0; k-- {
				sum := int(in[j+k]) + int(a[k%u]) + carry
				in[j+k] = byte(sum)
				carry = sum >> 8
			}
		}
	}
	return out[:size]
}

// unmarshalAll decodes DER into out, refusing trailing data.
func unmarshalAll(der []byte, out any) error {
	rest, err := asn1.Unmarshal(der, out)
	if err != nil {
		return fmt.Errorf("PKCS#12 structure: %w", err)
	}
	if len(rest) != 0 {
		return errors.New("PKCS#12 structure: trailing data")
	}
	return nil
}
