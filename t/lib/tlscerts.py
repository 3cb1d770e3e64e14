"""Test certificates, made at test time with the openssl tool (contrib/setup
--test installs it): nothing secret is ever committed.

Certs(dir) makes a CA ("stompd test CA") and, signed by it, certificates
for localhost / 127.0.0.1 good for servers and clients alike (a node of a
cluster is both), plus a second, unrelated CA with a certificate of its own
(a node or client the first CA does not vouch for). EC P-256 keys: quick to
make on a loaded machine.
"""
import os
import ssl
import subprocess

EXT = """basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
"""


def openssl(*args, cwd):
    r = subprocess.run(["openssl"] + list(args), cwd=cwd, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError("openssl %s failed:\n%s" % (" ".join(args), r.stderr))


class Certs:
    def __init__(self, dir):
        self.dir = dir
        os.makedirs(dir, exist_ok=True)
        with open(os.path.join(dir, "ext.cnf"), "w") as f:
            f.write(EXT)
        self.ca, self.ca_key = self.make_ca("ca", "stompd test CA")
        self.cert, self.key = self.issue("node", "localhost")
        self.client_cert, self.client_key = self.issue("client", "test client")
        self.rogue_ca, rogue_key = self.make_ca("rogue-ca", "some other CA")
        self.rogue_cert, self.rogue_key = self.issue("rogue", "localhost", ca=(self.rogue_ca, rogue_key))

    def path(self, name):
        return os.path.join(self.dir, name)

    def make_ca(self, name, cn):
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", name + ".key", "-out", name + ".pem", "-days", "2", "-subj", "/CN=" + cn, cwd=self.dir)
        return self.path(name + ".pem"), self.path(name + ".key")

    def issue(self, name, cn, ca=None):
        """A key and a certificate (CN cn) signed by ca (default: the test CA)."""
        ca_pem, ca_key = ca or (self.ca, self.ca_key)
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + cn, cwd=self.dir)
        openssl("x509", "-req", "-in", name + ".csr", "-CA", ca_pem, "-CAkey", ca_key, "-set_serial",
                str(int.from_bytes(os.urandom(8), "big")), "-days", "2", "-extfile", "ext.cnf",
                "-out", name + ".pem", cwd=self.dir)
        os.chmod(self.path(name + ".key"), 0o600)
        return self.path(name + ".pem"), self.path(name + ".key")

    def settings(self, ca=True, **extra):
        """The tls.* keys of a node using the test certificates."""
        s = {"tls.cert": self.cert, "tls.key": self.key}
        if ca:
            s["tls.ca"] = self.ca
        s.update({k.replace("__", "."): v for k, v in extra.items()})
        return s

    def client_context(self, ca=None, cert=None, key=None):
        """A client context trusting ca (default: the test CA), checking
        the host name, presenting cert/key when given."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(ca or self.ca)
        if cert:
            ctx.load_cert_chain(cert, key)
        return ctx
