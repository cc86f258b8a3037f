"""Stand-in for the pip bootstrap script that ansible-test downloads (its host is unreachable here).

ansible-test runs this file as __main__ with pip's install arguments. ensurepip runs in a subprocess
because in-process ensurepip points PIP_CONFIG_FILE at /dev/null and so loses the machine's pip
settings (index and certificates); the requested pip is then installed from the package index.
"""
import subprocess
import sys


def main():
    subprocess.run([sys.executable, '-m', 'ensurepip', '--upgrade', '--default-pip'],
                   check=True, stdout=subprocess.DEVNULL)
    args = [arg for arg in sys.argv[1:] if arg not in ('--no-setuptools', '--no-wheel')]
    subprocess.run([sys.executable, '-m', 'pip', 'install'] + args, check=True)


if __name__ == '__main__':
    main()
