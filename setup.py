"""The native DNS engine's C extension; everything else is in pyproject.toml.

`optional=True`: where no C compiler or Python headers exist the install still succeeds, and
the server answers with the Python engine (dnsbl.dns.native says so once, at start-up).
"""

import os

from setuptools import Extension, setup

# DNSBL_NATIVE_CFLAGS: extra compiler flags, e.g. the AddressSanitizer build of .ci/run.
extra = os.environ.get("DNSBL_NATIVE_CFLAGS", "").split()

setup(
    ext_modules=[
        Extension(
            "dnsbl.dns._native",
            [
                "dnsbl/dns/_native.c",
                "dnsbl/dns/_native_zones.c",
                "dnsbl/dns/_native_answer.c",
                "dnsbl/dns/_native_rrl.c",
            ],
            depends=["dnsbl/dns/_native.h"],
            extra_compile_args=[
                "-O2",
                "-Wall",
                "-Wextra",
                "-Wno-missing-field-initializers",
                *extra,
            ],
            extra_link_args=extra,
            optional=True,
        )
    ]
)
