from kpdoctor.entry import main

main()
