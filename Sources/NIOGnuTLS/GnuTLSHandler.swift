import GnuTLS
