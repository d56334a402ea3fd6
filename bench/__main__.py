"""`make bench`: the benchmarks that exist so far (issue 6 adds the side-by-side runs with peers and the report).

Never part of `make test`.
"""

from bench import crl_build

crl_build.main()
