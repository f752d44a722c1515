"""Pure science: numpy arrays in, numbers out. No I/O, clocks or globals.

Imports only numpy, scipy, astropy.stats and this package.
"""
