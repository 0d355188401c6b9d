"""Outbound DKIM signing (RFC 6376; ed25519-sha256 per RFC 8463).

`keys`: the key files `pigeon dkim keygen` writes and start-up reads;
`signer`: the two signatures for a message whose From domain has keys;
`dnsrecords`: the DNS records a sending domain publishes, and their check
(`pigeon dns`). Which mail is signed, and where, is docs/mail-auth.md
("Signing"): `net.intake` at the end of the data, `admin.localsubmit` for
`sendmail`.
"""
