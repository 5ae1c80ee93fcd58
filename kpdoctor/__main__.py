from kpdoctor.cli import main

main()
