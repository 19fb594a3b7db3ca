from dcond.cli import main

main()
