"""Taichung's administrative codes (household registry 鄉鎮市區代碼) and names."""

COUNTY = "臺中市"
COUNTY_CODE = "66"

# (code, name, English name): the 29 Taichung districts, codes from the household registry.
DISTRICTS = [
    ("6600100", "中區", "Central"), ("6600200", "東區", "East"), ("6600300", "南區", "South"),
    ("6600400", "西區", "West"), ("6600500", "北區", "North"), ("6600600", "西屯區", "Xitun"),
    ("6600700", "南屯區", "Nantun"), ("6600800", "北屯區", "Beitun"), ("6600900", "豐原區", "Fengyuan"),
    ("6601000", "東勢區", "Dongshi"), ("6601100", "大甲區", "Dajia"), ("6601200", "清水區", "Qingshui"),
    ("6601300", "沙鹿區", "Shalu"), ("6601400", "梧棲區", "Wuqi"), ("6601500", "后里區", "Houli"),
    ("6601600", "神岡區", "Shengang"), ("6601700", "潭子區", "Tanzi"), ("6601800", "大雅區", "Daya"),
    ("6601900", "新社區", "Xinshe"), ("6602000", "石岡區", "Shigang"), ("6602100", "外埔區", "Waipu"),
    ("6602200", "大安區", "Da'an"), ("6602300", "烏日區", "Wuri"), ("6602400", "大肚區", "Dadu"),
    ("6602500", "龍井區", "Longjing"), ("6602600", "霧峰區", "Wufeng"), ("6602700", "太平區", "Taiping"),
    ("6602800", "大里區", "Dali"), ("6602900", "和平區", "Heping"),
]

DISTRICT_NAME = {code: name for code, name, _ in DISTRICTS}
